//! End-to-end tests of the whole loop live in `tests/`.
