//! Initial allocation of clones (placeholder, filled below).
