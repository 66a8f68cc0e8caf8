//! Intel VT-d (placeholder; see issue 5).
