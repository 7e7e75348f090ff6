//! ShMC <-> blade agent protocol: messages, encoding and authentication.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]
