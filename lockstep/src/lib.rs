//! The redundancy engine: transactions executed on two replicas, digests, mailbox, coordinator.
//!
//! # Design
//!
//! The hypervisor is a deterministic state machine ([`Machine`]): a handler
//! `step(state, input, tx)` runs one transaction (a hypercall or a VM exit). It reads
//! nondeterministic values (time, random numbers, remote state, guest memory) only through
//! its [`Input`](input::Input), writes its replica only through journaled containers
//! ([`JCell`], [`JVec`], [`JMap`]) with the execution's [`Journal`], and emits effects (guest
//! registers, guest memory writes, events, IPIs, timers: the machine's own effect type)
//! instead of applying them. A state is a list of containers ([`ReplicaState`], or
//! [`impl_replica_state!`]); objects implement [`Value`] (or use [`impl_value!`]).
//!
//! One transaction, lockstep on:
//! 1. The leader runs the handler against its replica, recording every value it consumes in
//!    the input log ([`input`]); the log streams to the follower through the pair's
//!    [`Pair`](mailbox::Pair) mailbox (atomic words, no locks) while both execute.
//! 2. The follower replays the same handler against its own replica from that log.
//!    Asking for anything the leader did not record poisons the execution (divergence).
//! 3. Each execution digests its writes (container tag, operation, position, per-object
//!    checksum) and its effects plus result into a [`TxDigest`] and posts it into its
//!    cache-line-aligned, single-writer, round-numbered slot.
//! 4. The coordinator ([`coordinator`]: a dedicated core or the leader inline) compares the
//!    posts, waits at most a deadline on the caller's [`Clock`](role::Clock) (a hung or
//!    fail-stopped core is detected, not waited for) and posts commit / retry / escalate.
//! 5. Commit: the leader re-checks its effects against the agreed digest and applies them
//!    exactly once ([`EffectSink`]); undo records are dropped lazily
//!    (O(1) epoch bump). Retry: both replicas undo their journals, restoring every object
//!    bit for bit, single-bit upsets are corrected from the per-object checksums, and the
//!    transaction re-executes with the same inputs (the first attempt's log answers the
//!    same questions again). After `max_retries` ([`policy`]) the pair is escalated: the
//!    suspect is the core that missed every deadline, or the one whose replica fails its
//!    checksums, or the loser of a third execution on a fresh copy; it is taken out of
//!    service, a spare replaces it if offered, otherwise the system runs unprotected and
//!    [`Health`](policy::Health) says so loudly. Nothing is committed that the two
//!    executions did not agree on.
//!
//! Lockstep off, and after an escalation without a spare, the same handler runs once
//! ([`Engine::run_single`](engine::Engine::run_single)) with the same effects. On one CPU
//! (early boot) [`Engine::run_local`](engine::Engine::run_local) runs both replicas one
//! after the other. On several CPUs each core gets its role object:
//! [`LeaderCore::leader_run`](leader::LeaderCore::leader_run),
//! [`FollowerCore::follower_serve`](follower::FollowerCore::follower_serve),
//! [`Coordinator::coordinator_poll`](coordinator::Coordinator::coordinator_poll). Every
//! cross-core object is built from `core::sync::atomic`; the embedder supplies the clock and
//! the idle hook (`hlt`/IPI on bare metal) and builds each replica in its own memory.
//!
//! Several pairs ([`topology`]: `(n-1)/2` of them with `n` CPUs) run over one logical
//! state ([`shared`]): their leaders take turns with one leader replica under the embedder's
//! lock and number their rounds from one [`Sequence`](shared::Sequence), their followers
//! take turns with one [`SharedReplica`](shared::SharedReplica) in the leaders' commit
//! order, and one coordinator serves every mailbox
//! ([`coordinator_serve_all`](coordinator::coordinator_serve_all)). An escalated pair's
//! transactions go through another pair ([`LeaderCore::set_reroutable`](leader::LeaderCore::set_reroutable)).
//!
//! Fault injection ([`inject`], kinds `leader-reg follower-reg replica-state effects digest
//! mailbox hang`), the campaign runner ([`campaign`]) and the statistics ([`stats`]) measure
//! the protection; [`model`] is a small machine that the tests and the benchmark drive.
//!
//! # Digest and its guarantee
//!
//! The digest is CRC-32C (Castagnoli, [`digest`]). Its Hamming distance is 6 for messages up
//! to 5243 bits and 4 up to 2^31 - 1 bits (Koopman 2002), so every 1-, 2- or 3-bit error in
//! any message up to 256 MiB (and up to 5 bits up to 655 bytes) is detected, as is every
//! burst up to 32 bits whatever the length; anything else escapes with probability 2^-32.
//! The fault model is single-bit upsets: a flip in an object changes its checksum (detected);
//! a changed 32-bit object checksum absorbed into the running write digest is a burst of at
//! most 32 bits (detected); a flip in an effect or a digest word is a 1-bit error in a short
//! message (detected). Because the distance is at least 3, the per-object checksum also
//! *locates* and corrects a single flipped bit in a replica object without the other replica.
//! The unit tests check the 1-, 2- and 3-bit guarantee exhaustively on small messages; the
//! benchmark reports the cost per KiB.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

pub mod campaign;
pub mod config;
pub mod containers;
pub mod coordinator;
pub mod digest;
pub mod effects;
pub mod engine;
pub mod follower;
pub mod inject;
pub mod input;
pub mod journal;
pub mod leader;
pub mod machine;
pub mod mailbox;
pub mod model;
pub mod policy;
pub mod replica;
pub mod role;
pub mod shared;
pub mod stats;
pub mod topology;
pub mod value;

pub use config::{Config, EffectSink, EngineError, Outcome, TxResult};
pub use containers::{JMap, JVec, Stamp};
pub use digest::{Hasher, TxDigest};
pub use engine::{Engine, TypedRequest};
pub use journal::{JCell, Journal, Journaled};
pub use machine::{Machine, TxCtx};
pub use replica::ReplicaState;
pub use value::Value;
