//! TEMPORARY stub.
#![allow(missing_docs)]
use alloc::string::String;
use alloc::vec::Vec;
pub struct GuestDtbSpec { pub ram_base: u64, pub ram_size: u64, pub cpus: u32, pub bootargs: String }
pub fn guest_dtb(_s: &GuestDtbSpec) -> Vec<u8> { Vec::new() }
