//! rate-limit filter (work in progress)
