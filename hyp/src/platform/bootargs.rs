//! The hypervisor's configuration from `/chosen/bootargs` ([`Config`]):
//! the grammar of `docs/HYPERVISOR.md`, its defaults and bounds, and why a
//! command line is rejected ([`ConfigError`]).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Guest memory population policy (`policy=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Map 4 KiB pages on demand (default).
    #[default]
    Pages,
    /// Map 2 MiB blocks where a whole aligned block lies in guest RAM.
    Blocks,
}

/// Stage-2 table locking (`lock=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockKind {
    /// Split locking (default).
    #[default]
    Split,
    /// One lock per VM.
    Single,
}

/// How the aliases of a page shared with `HYP_ALIAS` or `HYP_SHARE` are
/// kept coherent (`coherency=`): what every mapping of such a page becomes
/// once it has another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Coherency {
    /// Normal Non-cacheable (default).
    #[default]
    Nc,
    /// Read-only: a write faults, and the writing mapping becomes the only
    /// writable one.
    Ro,
}

/// The hypervisor configuration from `/chosen/bootargs`:
/// `vms=N vcpus=N mem=SIZE policy=pages|blocks lock=split|single
/// premap=0|1 collapse=0|1 coherency=nc|ro`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Number of VMs running the guest image (1..=8, default 1).
    pub vms: usize,
    /// vCPUs per VM (1..=8, default 1).
    pub vcpus: usize,
    /// Guest RAM in bytes (2 MiB..=4 GiB, a multiple of 2 MiB; default 128 MiB).
    pub mem: u64,
    /// Population policy (default pages).
    pub policy: Policy,
    /// Locking mode (default split).
    pub lock: LockKind,
    /// Map all guest RAM before the guest starts (`premap=1`), for
    /// comparing against demand paging. Default 0.
    pub premap: bool,
    /// Collapse a 2 MiB range into a block once all its pages are mapped
    /// (`collapse=1`). Default 0.
    pub collapse: bool,
    /// Coherency policy for aliased pages (default `nc`).
    pub coherency: Coherency,
}

impl Config {
    /// Largest `vms=`.
    pub const MAX_VMS: usize = 8;
    /// Largest `vcpus=`.
    pub const MAX_VCPUS: usize = 8;
    /// Smallest `mem=`.
    pub const MIN_MEM: u64 = 2 << 20;
    /// Largest `mem=`.
    pub const MAX_MEM: u64 = 4 << 30;
    /// `mem=` must be a multiple of this.
    pub const MEM_ALIGN: u64 = 2 << 20;
    /// `mem=` when not given.
    pub const DEFAULT_MEM: u64 = 128 << 20;

    /// Parses whitespace-separated `key=value` words. An unknown key, a
    /// key given twice or a word without `=` is an error. When a word is
    /// `--`, only the words after the first one are the hypervisor's: the
    /// Raspberry Pi firmware puts its own Linux options before the contents
    /// of `cmdline.txt`, which therefore starts with `--`. Keys not given
    /// keep their defaults.
    pub fn parse(bootargs: &str) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let mut seen: Vec<&str> = Vec::new();
        let words: Vec<&str> = bootargs.split_ascii_whitespace().collect();
        let ours = match words.iter().position(|&w| w == "--") {
            Some(i) => &words[i + 1..],
            None => &words[..],
        };
        for &word in ours {
            let Some((key, value)) = word.split_once('=') else {
                return Err(ConfigError::NotKeyValue(word.into()));
            };
            if seen.contains(&key) {
                return Err(ConfigError::DuplicateKey(key.into()));
            }
            seen.push(key);
            match key {
                "vms" => config.vms = parse_count("vms", value, Self::MAX_VMS)?,
                "vcpus" => config.vcpus = parse_count("vcpus", value, Self::MAX_VCPUS)?,
                "mem" => {
                    let mem = parse_size(value).ok_or_else(|| ConfigError::BadNumber {
                        key: "mem",
                        value: value.into(),
                    })?;
                    if !(Self::MIN_MEM..=Self::MAX_MEM).contains(&mem) {
                        return Err(ConfigError::OutOfRange {
                            key: "mem",
                            value: mem,
                            min: Self::MIN_MEM,
                            max: Self::MAX_MEM,
                        });
                    }
                    if !mem.is_multiple_of(Self::MEM_ALIGN) {
                        return Err(ConfigError::NotMultiple {
                            key: "mem",
                            value: mem,
                            multiple: Self::MEM_ALIGN,
                        });
                    }
                    config.mem = mem;
                }
                "policy" => {
                    config.policy = match value {
                        "pages" => Policy::Pages,
                        "blocks" => Policy::Blocks,
                        _ => return Err(bad_choice("policy", value, "pages|blocks")),
                    }
                }
                "lock" => {
                    config.lock = match value {
                        "split" => LockKind::Split,
                        "single" => LockKind::Single,
                        _ => return Err(bad_choice("lock", value, "split|single")),
                    }
                }
                "premap" => config.premap = parse_bool("premap", value)?,
                "collapse" => config.collapse = parse_bool("collapse", value)?,
                "coherency" => {
                    config.coherency = match value {
                        "nc" => Coherency::Nc,
                        "ro" => Coherency::Ro,
                        _ => return Err(bad_choice("coherency", value, "nc|ro")),
                    }
                }
                _ => return Err(ConfigError::UnknownKey(key.into())),
            }
        }
        Ok(config)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            vms: 1,
            vcpus: 1,
            mem: Self::DEFAULT_MEM,
            policy: Policy::Pages,
            lock: LockKind::Split,
            premap: false,
            collapse: false,
            coherency: Coherency::Nc,
        }
    }
}

fn parse_bool(key: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(bad_choice(key, value, "0|1")),
    }
}

/// Why bootargs were rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A word without `=`.
    NotKeyValue(String),
    /// A key the hypervisor does not know.
    UnknownKey(String),
    /// A key given twice.
    DuplicateKey(String),
    /// A value that is not a number (or size) at all.
    BadNumber {
        /// The key.
        key: &'static str,
        /// The value as written.
        value: String,
    },
    /// A number outside the key's bounds.
    OutOfRange {
        /// The key.
        key: &'static str,
        /// The value (bytes for `mem`).
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A size that is not a multiple of the required granule.
    NotMultiple {
        /// The key.
        key: &'static str,
        /// The value in bytes.
        value: u64,
        /// The granule.
        multiple: u64,
    },
    /// A value outside a fixed set of words.
    BadChoice {
        /// The key.
        key: &'static str,
        /// The value as written.
        value: String,
        /// The allowed words, `|`-separated.
        expected: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotKeyValue(w) => write!(f, "bootargs: {w:?} is not key=value"),
            Self::UnknownKey(k) => {
                write!(
                    f,
                    "bootargs: unknown key {k:?} (known: vms, vcpus, mem, policy, lock, premap, collapse, coherency)"
                )
            }
            Self::DuplicateKey(k) => write!(f, "bootargs: {k} given twice"),
            Self::BadNumber { key, value } => write!(f, "bootargs: {key}={value} is not a number"),
            Self::OutOfRange { key, value, min, max } => {
                write!(f, "bootargs: {key}={value} is outside {min}..={max}")
            }
            Self::NotMultiple { key, value, multiple } => {
                write!(f, "bootargs: {key}={value} is not a multiple of {multiple}")
            }
            Self::BadChoice { key, value, expected } => {
                write!(f, "bootargs: {key}={value}: expected {expected}")
            }
        }
    }
}

fn bad_choice(key: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::BadChoice { key, value: value.into(), expected }
}

fn parse_count(key: &'static str, value: &str, max: usize) -> Result<usize, ConfigError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::BadNumber { key, value: value.into() });
    }
    let n: u64 = value.parse().unwrap_or(u64::MAX); // all digits: only overflow fails
    let max = max as u64;
    match usize::try_from(n) {
        Ok(count) if (1..=max).contains(&n) => Ok(count),
        _ => Err(ConfigError::OutOfRange { key, value: n, min: 1, max }),
    }
}

/// Parses a decimal size with an optional `K`, `M` or `G` suffix (binary
/// multiples, either case): `"64M"` = 64 MiB. `None` if malformed or
/// overflowing.
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::fixtures::MIB;

    #[test]
    fn config_grammar() {
        assert_eq!(
            Config::default(),
            Config {
                vms: 1,
                vcpus: 1,
                mem: 128 * MIB,
                policy: Policy::Pages,
                lock: LockKind::Split,
                premap: false,
                collapse: false,
                coherency: Coherency::Nc,
            }
        );
        assert_eq!(Config::parse(""), Ok(Config::default()));
        assert_eq!(Config::parse("  \n"), Ok(Config::default()));
        assert_eq!(
            Config::parse("vms=8 vcpus=8 mem=4G policy=blocks lock=single premap=1"),
            Ok(Config {
                vms: 8,
                vcpus: 8,
                mem: 4 << 30,
                policy: Policy::Blocks,
                lock: LockKind::Single,
                premap: true,
                collapse: false,
                coherency: Coherency::Nc,
            })
        );
        assert_eq!(Config::parse("coherency=ro").unwrap().coherency, Coherency::Ro);
        assert_eq!(Config::parse("coherency=nc").unwrap().coherency, Coherency::Nc);
        assert!(!Config::parse("premap=0").unwrap().premap);
        assert!(Config::parse("collapse=1").unwrap().collapse);
        assert!(matches!(Config::parse("premap=yes"), Err(ConfigError::BadChoice { .. })));
        assert_eq!(Config::parse("mem=2M").unwrap().mem, 2 * MIB);
        assert_eq!(Config::parse("mem=2048k").unwrap().mem, 2 * MIB);
        assert_eq!(Config::parse("mem=1g").unwrap().mem, 1 << 30);
        assert_eq!(Config::parse("mem=4194304").unwrap().mem, 4 * MIB);
        assert_eq!(Config::parse("\tvms=3\n").unwrap().vms, 3);
        assert_eq!(Config::parse("vms=007").unwrap().vms, 7);

        use ConfigError::*;
        let err = |s| Config::parse(s).unwrap_err();
        assert_eq!(err("quiet"), NotKeyValue("quiet".into()));
        assert_eq!(err("console=ttyAMA0"), UnknownKey("console".into()));
        assert_eq!(err("vms=1 vms=2"), DuplicateKey("vms".into()));
        assert_eq!(err("vms="), BadNumber { key: "vms", value: "".into() });
        assert_eq!(err("vms=-1"), BadNumber { key: "vms", value: "-1".into() });
        assert_eq!(err("vms=0x2"), BadNumber { key: "vms", value: "0x2".into() });
        assert_eq!(err("vms=0"), OutOfRange { key: "vms", value: 0, min: 1, max: 8 });
        assert_eq!(err("vms=9"), OutOfRange { key: "vms", value: 9, min: 1, max: 8 });
        assert_eq!(
            err("vcpus=99999999999999999999999"),
            OutOfRange { key: "vcpus", value: u64::MAX, min: 1, max: 8 }
        );
        assert_eq!(err("vcpus=9"), OutOfRange { key: "vcpus", value: 9, min: 1, max: 8 });
        assert_eq!(err("mem=64X"), BadNumber { key: "mem", value: "64X".into() });
        assert_eq!(err("mem=M"), BadNumber { key: "mem", value: "M".into() });
        assert_eq!(err("mem="), BadNumber { key: "mem", value: "".into() });
        assert_eq!(err("mem=99999999999G"), BadNumber { key: "mem", value: "99999999999G".into() });
        assert_eq!(
            err("mem=1M"),
            OutOfRange { key: "mem", value: MIB, min: 2 * MIB, max: 4 << 30 }
        );
        assert_eq!(err("mem=0"), OutOfRange { key: "mem", value: 0, min: 2 * MIB, max: 4 << 30 });
        assert_eq!(
            err("mem=4100M"),
            OutOfRange { key: "mem", value: 4100 * MIB, min: 2 * MIB, max: 4 << 30 }
        );
        assert_eq!(err("mem=3M"), NotMultiple { key: "mem", value: 3 * MIB, multiple: 2 * MIB });
        assert_eq!(
            err("policy=huge"),
            BadChoice { key: "policy", value: "huge".into(), expected: "pages|blocks" }
        );
        assert_eq!(
            err("coherency=wb"),
            BadChoice { key: "coherency", value: "wb".into(), expected: "nc|ro" }
        );
        assert_eq!(
            err("lock=none"),
            BadChoice { key: "lock", value: "none".into(), expected: "split|single" }
        );
        // What follows `--` is ours; before it, the boot loader's.
        let pi = "coherent_pool=1M 8250.nr_uarts=1 console=ttyS0,115200 -- vms=2 lock=single";
        let c = Config::parse(pi).unwrap();
        assert_eq!((c.vms, c.lock), (2, LockKind::Single));
        assert_eq!(Config::parse("console=ttyS0 --").unwrap(), Config::default());
        assert_eq!(err("console=ttyS0 -- bogus=1"), UnknownKey("bogus".into()));
        assert_eq!(err("vms=2 bogus=1"), UnknownKey("bogus".into()));
        assert!(err("console=x").to_string().contains("unknown key \"console\""));
        assert!(err("mem=3M").to_string().contains("multiple of 2097152"));
        assert_eq!(parse_size("16K"), Some(16 << 10));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("1.5G"), None);
    }
}
