//! Where serial input goes (Xen's `serial_rx`/`switch_serial_input`): to dom0, or — after
//! CTRL-a typed three times — to the hypervisor's debug keys, and back the same way.

/// Xen's default switch character (`conswitch=a`): CTRL-a.
pub const SWITCH_CODE: u8 = 0x01;

/// What one received byte turns into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxAction {
    /// A byte for dom0's input ring (then VIRQ_CONSOLE).
    ToDom0(u8),
    /// A debug key for the hypervisor.
    Key(u8),
    /// Input was switched; the line to print (without the `(XEN) ` prefix).
    Switched(&'static str),
}

/// The line Xen 4.17 prints when input goes to the hypervisor.
pub const TO_XEN: &str = "*** Serial input to Xen (type 'CTRL-a' three times to switch input)";
/// The line Xen 4.17 prints when input goes to dom0 (also once at the end of boot).
pub const TO_DOM0: &str = "*** Serial input to DOM0 (type 'CTRL-a' three times to switch input)";

/// The switch state: who gets input, and how many CTRL-a are pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputSwitch {
    to_xen: bool,
    pending: u8,
}

impl Default for InputSwitch {
    fn default() -> Self {
        Self::new()
    }
}

impl InputSwitch {
    /// Input to dom0 (the state after Xen's `console_endboot`).
    pub const fn new() -> Self {
        InputSwitch {
            to_xen: false,
            pending: 0,
        }
    }

    /// Whether input goes to the hypervisor's debug keys now.
    pub fn to_xen(&self) -> bool {
        self.to_xen
    }

    fn deliver(&self, c: u8, out: &mut dyn FnMut(RxAction)) {
        out(if self.to_xen {
            RxAction::Key(c)
        } else {
            RxAction::ToDom0(c)
        });
    }

    /// Processes one received byte: CTRL-a is held back in groups of three (which switch
    /// input); a partial group is delivered before the next other byte, as Xen does.
    pub fn feed(&mut self, c: u8, out: &mut dyn FnMut(RxAction)) {
        if c == SWITCH_CODE {
            self.pending += 1;
            if self.pending == 3 {
                self.pending = 0;
                self.to_xen = !self.to_xen;
                out(RxAction::Switched(if self.to_xen {
                    TO_XEN
                } else {
                    TO_DOM0
                }));
            }
            return;
        }
        while self.pending > 0 {
            self.pending -= 1;
            self.deliver(SWITCH_CODE, out);
        }
        self.deliver(c, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn feed_all(s: &mut InputSwitch, bytes: &[u8]) -> Vec<RxAction> {
        let mut v = Vec::new();
        for &b in bytes {
            s.feed(b, &mut |a| v.push(a));
        }
        v
    }

    #[test]
    fn plain_bytes_go_to_dom0() {
        let mut s = InputSwitch::new();
        assert_eq!(
            feed_all(&mut s, b"ab"),
            [RxAction::ToDom0(b'a'), RxAction::ToDom0(b'b')]
        );
    }

    #[test]
    fn three_ctrl_a_switch_to_xen_and_back() {
        let mut s = InputSwitch::new();
        let v = feed_all(&mut s, &[1, 1, 1, b'h', 1, 1, 1, b'x']);
        assert_eq!(
            v,
            [
                RxAction::Switched(TO_XEN),
                RxAction::Key(b'h'),
                RxAction::Switched(TO_DOM0),
                RxAction::ToDom0(b'x')
            ]
        );
        assert!(!s.to_xen());
    }

    #[test]
    fn a_partial_group_is_delivered_before_the_next_byte() {
        let mut s = InputSwitch::new();
        let v = feed_all(&mut s, &[1, 1, b'q', 1, 1, 1, 1]);
        assert_eq!(
            v,
            [
                RxAction::ToDom0(1),
                RxAction::ToDom0(1),
                RxAction::ToDom0(b'q'),
                RxAction::Switched(TO_XEN)
            ]
        );
        // One CTRL-a still pending: it reaches the debug keys with the next byte.
        assert_eq!(
            feed_all(&mut s, b"r"),
            [RxAction::Key(1), RxAction::Key(b'r')]
        );
    }
}
