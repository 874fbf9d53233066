//! Host settings API (work in progress).
