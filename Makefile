# DualVisor: build, run and test. `make run` boots the hypervisor under QEMU; `make test` runs
# every tier of tests. Tools missing on a fresh Debian/Ubuntu machine are installed by `make deps`.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := image

CARGO    ?= cargo
QEMU     ?= qemu-system-x86_64
BUILD    := build
TARGET   := $(or $(CARGO_TARGET_DIR),target)/x86_64-unknown-linux-gnu/release
IMAGE_TARGET := $(or $(CARGO_TARGET_DIR),target)/x86_64-unknown-linux-gnu/image
IMAGE    := $(BUILD)/dualvisor.elf
ISO      := $(BUILD)/dualvisor.iso
ISO_ROOT := $(BUILD)/iso-root

# `make run` knobs: CPU count, kernel command line and boot modules. RUN_MODULES is QEMU's
# -initrd syntax, "file args,file args".
SMP         ?= 4
RUN_APPEND  ?= console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all noreboot
# The default is dom0 (built by `make dom0`) and its initrd (built by `make initrd`).
DOM0        := $(BUILD)/dom0.elf
INITRD      := $(BUILD)/dom0-initrd.cpio
RUN_MODULES ?= $(DOM0),$(INITRD)

# Host tools the QEMU targets need: command -> Debian package.
DEP_CMDS := qemu-system-x86_64 grub-mkrescue xorriso mformat
DEP_PKGS := qemu-system-x86 grub-pc-bin grub-common xorriso mtools

.PHONY: deps image iso run test lint unit qemu-tests guests xen linux bench profile clean initrd dom0

## deps: install QEMU, GRUB (BIOS), xorriso and mtools if any is missing (quiet when all there)
deps:
	@missing=""; \
	for c in $(DEP_CMDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	for p in $(DEP_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "deps: missing:$$missing; installing $(DEP_PKGS)"; \
		command -v apt-get >/dev/null || { echo "deps: no apt-get; install $(DEP_PKGS) by hand" >&2; exit 1; }; \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEP_PKGS); \
	fi

## image: the hypervisor ELF, build/dualvisor.elf
## (cargo profile `image`: release with fat LTO and one codegen unit, see Cargo.toml)
image:
	@$(CARGO) build --profile image --bin dualvisor
	@mkdir -p $(BUILD)
	@cp $(IMAGE_TARGET)/dualvisor $(IMAGE) && echo "image: $(IMAGE)" >&2

## iso: a GRUB rescue ISO booting the image through multiboot2, build/dualvisor.iso
iso: deps image
	@rm -rf $(ISO_ROOT) && mkdir -p $(ISO_ROOT)/boot/grub
	cp $(IMAGE) $(ISO_ROOT)/boot/dualvisor.elf
	cp arch/grub.cfg $(ISO_ROOT)/boot/grub/grub.cfg
	grub-mkrescue -o $(ISO) $(ISO_ROOT) 2>$(BUILD)/grub-mkrescue.log || { cat $(BUILD)/grub-mkrescue.log >&2; exit 1; }
	@echo "iso: $(ISO)"

## dom0: the dom0 kernel (tools/dom0, a PV kernel with the shell and xl), build/dom0.elf
dom0:
	@$(CARGO) build --release -p dom0
	@mkdir -p $(BUILD)
	@cp $(TARGET)/dom0 $(DOM0) && echo "dom0: $(DOM0)" >&2

## run: boot the image with dom0 and its initrd under QEMU, serial console on stdio (works with
## pipes; stop with ^C). Only the serial output goes to stdout; make's messages go to stderr.
run: deps image dom0 initrd
	@echo "run: $(QEMU) -smp $(SMP) -kernel $(IMAGE) -append \"$(RUN_APPEND)\"$(if $(strip $(RUN_MODULES)), -initrd \"$(RUN_MODULES)\")" >&2
	@exec $(QEMU) -machine q35 -cpu EPYC,-monitor,-smap -smp $(SMP) -m 1024 -nic none \
		-display none -monitor none -serial stdio \
		-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
		-kernel $(IMAGE) -append "$(RUN_APPEND)" \
		$(if $(strip $(RUN_MODULES)),-initrd "$(RUN_MODULES)")

## lint: formatting and clippy over the whole workspace
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## unit: host unit tests of every crate
unit:
	$(CARGO) test --workspace

## qemu-tests: the QEMU integration scenarios (needs image and iso; oracle needs guests, xen)
qemu-tests: deps
	$(CARGO) run --release -p tests --bin qemu-tests -- $(if $(FILTER),--filter "$(FILTER)")

## test: everything: lint, unit tests, image, ISO, test guests, dom0 + initrd, Xen oracle, Debian's
## Linux, QEMU scenarios
test: deps
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory iso
	$(MAKE) --no-print-directory guests
	$(MAKE) --no-print-directory dom0 initrd
	$(MAKE) --no-print-directory xen
	$(MAKE) --no-print-directory linux
	$(MAKE) --no-print-directory qemu-tests

## guests: the test guest kernels, build/guests/*.elf
guests:
	@if [ -x scripts/build-guests.sh ]; then scripts/build-guests.sh; \
	elif [ -f scripts/build-guests.sh ]; then bash scripts/build-guests.sh; \
	else echo "guests: scripts/build-guests.sh not present yet, no test guests"; fi

## initrd: dom0's initrd, a cpio "newc" archive of tools/initrd-root/ plus the guest kernels
## xl starts from it (boot/demo.elf, boot/hello.elf), build/dom0-initrd.cpio
initrd: guests
	@$(CARGO) build --release -p mkinitrd
	$(TARGET)/mkinitrd $(INITRD) tools/initrd-root \
		boot/demo.elf=$(BUILD)/guests/demo.elf boot/hello.elf=$(BUILD)/guests/hello.elf

## xen: real Xen 4.17 for the differential oracle, build/xen/xen.elf
xen:
	@if [ -x scripts/fetch-xen.sh ]; then scripts/fetch-xen.sh; \
	elif [ -f scripts/fetch-xen.sh ]; then bash scripts/fetch-xen.sh; \
	else echo "xen: scripts/fetch-xen.sh not present yet, oracle runs will be skipped"; fi

## linux: Debian's Linux 6.1 kernel (linux-image-6.1.0-*-amd64) as an ELF for the linux-dom0
## scenarios, build/linux/vmlinux
linux:
	@bash scripts/fetch-linux.sh

## bench: hypercall cost on Xen 4.17 vs DualVisor lockstep off/on, host lockstep costs and the
## self-test's recovery latency, measured in one run and printed as ratios (not part of `test`)
bench: deps
	@scripts/bench.sh

## profile: sample where the CPUs spend a hypercall loop's time (hcloop guest, QEMU monitor),
## hottest functions per CPU; PROFILE_CALL=version|send|yield, PROFILE_LOCKSTEP=off|on
profile: deps
	@scripts/profile.sh

clean:
	rm -rf $(BUILD)
	$(CARGO) clean
