//! TEMPORARY stub (replaced by the real module).
#![allow(missing_docs, dead_code)]
use alloc::string::String;
use alloc::vec::Vec;
#[derive(Clone, Copy, Debug)] pub struct Region { pub base: u64, pub size: u64, pub name: &'static str }
impl Region { pub fn named(name: &'static str, base: u64, size: u64) -> Self { Self { base, size, name } } }
#[derive(Clone, Copy, PartialEq, Eq, Debug)] pub enum PsciMethod { Smc, Hvc }
pub struct Cpu { pub mpidr: u64 }
pub struct Platform { pub memory: Vec<Region>, pub reserved: Vec<Region>, pub initrd: Option<Region>, pub dtb_size: u64, pub uart: Option<u64>, pub psci_method: Option<PsciMethod>, pub cpus: Vec<Cpu>, pub bootargs: Option<String> }
impl Platform { /// # Safety
 /// stub
 pub unsafe fn from_addr(_dtb: u64) -> Result<Platform, &'static str> { Err("stub") } }
pub fn free_ranges(_m: &[Region], _e: &[Region]) -> Vec<Region> { Vec::new() }
#[derive(Clone, Copy, PartialEq, Eq, Debug)] pub enum Policy { Pages, Blocks }
#[derive(Clone, Copy, PartialEq, Eq, Debug)] pub enum LockKind { Split, Single }
pub struct Config { pub vms: usize, pub vcpus: usize, pub mem: u64, pub policy: Policy, pub lock: LockKind }
impl Config { pub fn parse(_s: &str) -> Result<Config, &'static str> { Err("stub") } }
