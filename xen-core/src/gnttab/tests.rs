//! Host tests of the grant tables: every sub-op through the hypercall path, with a fake
//! machine memory standing in for the shared frames.
