//! Client mode: stdio to a remote server (issue 3).
