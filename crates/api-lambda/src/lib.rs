//! Lambda restJson1 adapter.
