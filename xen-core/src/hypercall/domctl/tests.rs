//! Host tests of domctl.
