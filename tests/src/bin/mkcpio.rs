//! Writes and reads cpio "newc" archives (`harness::cpio`) without a
//! `cpio` binary: the hypervisor's Linux bundles and guest initramfs
//! trees (`scripts/linux.sh` uses it).
//!
//! ```sh
//! mkcpio bundle -o OUT --vm kernel=PATH[,initrd=PATH][,cmdline=TEXT][,config=TEXT] [--vm ...]
//! mkcpio bundle -o OUT --vm firmware=PATH[,kernel=PATH][,...] # a firmware VM (U-Boot)
//! mkcpio tree -o OUT DIR       # DIR's contents, sorted, uid/gid 0, mtime 0
//! mkcpio list FILE|-           # one `ls -l`-like line per entry
//! mkcpio check FILE|-          # checks the bundle contract, one line per VM
//! ```
//!
//! `bundle` writes `vm1/...` for the first `--vm`, `vm2/...` for the
//! second and so on (the format is in `harness::cpio`'s documentation). A
//! comma separates two items of `--vm` only before `kernel=`, `firmware=`,
//! `initrd=`, `cmdline=` or `config=`, so `cmdline=console=ttyAMA0,115200` keeps its
//! comma; quote the whole `--vm` value when it holds spaces. Output files
//! are written next to OUT and renamed into place, so OUT is never seen
//! half written.
//!
//! Exit status: 0 on success, 1 when a file cannot be read or written or
//! an archive is not valid, 2 on bad usage.

use std::{
    fs,
    io::{self, Read},
    path::{Path, PathBuf},
    process::ExitCode,
};

use harness::cpio::{self, KernelKind, VmSpec, Writer};

const USAGE: &str = "\
usage: mkcpio bundle -o OUT --vm kernel=PATH[,initrd=PATH][,cmdline=TEXT][,config=TEXT] [--vm ...]
       mkcpio bundle -o OUT --vm firmware=PATH[,kernel=PATH][,...] [--vm ...]
       mkcpio tree -o OUT DIR
       mkcpio list FILE|-
       mkcpio check FILE|-
Writes or reads cpio newc archives. bundle: the hypervisor's bundle, one
--vm per VM (vm1, vm2, ...). tree: DIR's directories, files and symlinks,
sorted, owned by 0:0, mtime 0. list: one line per entry. check: checks a
bundle against the contract and prints its VMs.";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Bundle { out: PathBuf, vms: Vec<VmSpec> },
    Tree { out: PathBuf, dir: PathBuf },
    List { file: PathBuf },
    Check { file: PathBuf },
    Help,
}

/// Parses the arguments after the program name.
fn parse_args(args: &[String]) -> Result<Command, String> {
    let Some((mode, rest)) = args.split_first() else {
        return Err("no mode given".into());
    };
    let mut out = None;
    let mut vms = Vec::new();
    let mut positional = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-o" | "--output" => out = Some(PathBuf::from(value(a)?)),
            "--vm" if mode == "bundle" => vms.push(VmSpec::parse(value(a)?)?),
            s if s.starts_with('-') && s != "-" => return Err(format!("unknown option {s:?}")),
            s => positional.push(PathBuf::from(s)),
        }
    }
    let out = || out.clone().ok_or(format!("{mode} needs -o OUT"));
    let one = |what: &str| match positional.as_slice() {
        [p] => Ok(p.clone()),
        _ => Err(format!("{mode} takes one {what}")),
    };
    match mode.as_str() {
        "-h" | "--help" => Ok(Command::Help),
        "bundle" if !positional.is_empty() => Err("bundle takes no file arguments".into()),
        "bundle" if vms.is_empty() => Err("bundle needs at least one --vm".into()),
        "bundle" => Ok(Command::Bundle { out: out()?, vms }),
        "tree" => Ok(Command::Tree { out: out()?, dir: one("directory")? }),
        "list" => Ok(Command::List { file: one("archive")? }),
        "check" => Ok(Command::Check { file: one("archive")? }),
        m => Err(format!("unknown mode {m:?}")),
    }
}

/// Writes `bytes` to `out` through a temporary file beside it.
fn write_atomically(out: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = out.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{}: not a file name", out.display()))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = out.with_file_name(tmp_name);
    fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, out)).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Reads `file`, or standard input for `-`.
fn read_input(file: &Path) -> io::Result<Vec<u8>> {
    if file == Path::new("-") {
        let mut bytes = Vec::new();
        io::stdin().read_to_end(&mut bytes)?;
        Ok(bytes)
    } else {
        fs::read(file)
    }
}

/// One line about a bundle's VM, for `check`.
fn describe_vm(vm: &cpio::BundleVm) -> String {
    let mut line = format!("vm{}: ", vm.vm);
    if let Some(firmware) = &vm.firmware {
        line.push_str(&format!("firmware ({} bytes)", firmware.len()));
        if !vm.kernel.is_empty() {
            line.push_str(", ");
        }
    }
    if !vm.kernel.is_empty() {
        let kind = KernelKind::of(&vm.kernel);
        line.push_str(&format!("kernel {kind} ({} bytes)", vm.kernel.len()));
    }
    if let Some(initrd) = &vm.initrd {
        let kind = if initrd.starts_with(&[0x1f, 0x8b]) {
            "gzip"
        } else if initrd.starts_with(cpio::MAGIC) {
            "cpio"
        } else {
            "data"
        };
        line.push_str(&format!(", initrd {kind} ({} bytes)", initrd.len()));
    }
    if let Some(cmdline) = &vm.cmdline {
        line.push_str(&format!(", cmdline {cmdline:?}"));
    }
    if let Some(config) = &vm.config {
        line.push_str(&format!(", config {config:?}"));
    }
    line
}

/// An error message naming `what`, for `map_err`.
fn io_err(what: &Path) -> impl Fn(io::Error) -> String + '_ {
    move |e| format!("{}: {e}", what.display())
}

/// Carries out `command`, printing what `list` and `check` report.
fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Help => println!("{USAGE}"),
        Command::Bundle { out, vms } => {
            let bytes = cpio::write_bundle(Vec::new(), &vms).map_err(|e| e.to_string())?;
            write_atomically(&out, &bytes).map_err(io_err(&out))?;
        }
        Command::Tree { out, dir } => {
            if !dir.is_dir() {
                return Err(format!("{}: not a directory", dir.display()));
            }
            let mut w = Writer::new(Vec::new());
            cpio::write_tree(&mut w, &dir).map_err(io_err(&dir))?;
            let bytes = w.finish().map_err(io_err(&out))?;
            write_atomically(&out, &bytes).map_err(io_err(&out))?;
        }
        Command::List { file } => {
            let bytes = read_input(&file).map_err(io_err(&file))?;
            let entries = cpio::parse(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
            for e in &entries {
                println!("{}", cpio::describe(e));
            }
        }
        Command::Check { file } => {
            let bytes = read_input(&file).map_err(io_err(&file))?;
            let entries = cpio::parse(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
            let vms =
                cpio::check_bundle(&entries).map_err(|e| format!("{}: {e}", file.display()))?;
            for vm in &vms {
                println!("{}", describe_vm(vm));
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mkcpio: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mkcpio: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn parses_the_modes() {
        assert_eq!(
            parse_args(&args(&[
                "bundle",
                "-o",
                "b.cpio",
                "--vm",
                "kernel=/k",
                "--vm",
                "kernel=/k,cmdline=a b"
            ]))
            .unwrap(),
            Command::Bundle {
                out: "b.cpio".into(),
                vms: vec![
                    VmSpec { kernel: "/k".into(), ..VmSpec::default() },
                    VmSpec {
                        kernel: "/k".into(),
                        cmdline: Some("a b".into()),
                        ..VmSpec::default()
                    },
                ],
            }
        );
        assert_eq!(
            parse_args(&args(&["tree", "root", "-o", "i.cpio"])).unwrap(),
            Command::Tree { out: "i.cpio".into(), dir: "root".into() }
        );
        assert_eq!(parse_args(&args(&["list", "-"])).unwrap(), Command::List { file: "-".into() });
        assert_eq!(
            parse_args(&args(&["check", "b"])).unwrap(),
            Command::Check { file: "b".into() }
        );
        assert_eq!(parse_args(&args(&["--help"])).unwrap(), Command::Help);
        for bad in [
            &[][..],
            &["bundle", "-o", "b"],
            &["bundle", "--vm", "kernel=/k"],
            &["bundle", "-o", "b", "--vm", "initrd=/i"],
            &["bundle", "-o", "b", "--vm", "kernel=/k", "extra"],
            &["tree", "-o", "x"],
            &["tree", "-o", "x", "a", "b"],
            &["tree", "--vm", "kernel=/k", "-o", "x", "d"],
            &["list"],
            &["frob"],
            &["list", "-o"],
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn writes_reads_and_checks_files() {
        let dir = std::env::temp_dir().join(format!("mkcpio-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let tree = dir.join("tree");
        fs::create_dir_all(tree.join("bin")).unwrap();
        fs::write(tree.join("init"), "#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("busybox", tree.join("bin/sh")).unwrap();
        let initrd = dir.join("initrd.cpio");
        run(Command::Tree { out: initrd.clone(), dir: tree.clone() }).unwrap();
        let names: Vec<String> =
            cpio::parse(&fs::read(&initrd).unwrap()).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["bin", "bin/sh", "init"]);

        let kernel = dir.join("zImage");
        let mut image = vec![0u8; 0x40];
        image[0x24..0x28].copy_from_slice(&0x016f_2818u32.to_le_bytes());
        fs::write(&kernel, &image).unwrap();
        let bundle = dir.join("bundle.cpio");
        let vm = VmSpec {
            kernel: kernel.clone(),
            firmware: None,
            initrd: Some(initrd),
            cmdline: Some("console=ttyAMA0 earlycon".into()),
            config: Some("vcpus=4 mem=512M".into()),
        };
        run(Command::Bundle { out: bundle.clone(), vms: vec![vm.clone(), vm] }).unwrap();
        run(Command::Check { file: bundle.clone() }).unwrap();
        let vms = cpio::check_bundle(&cpio::parse(&fs::read(&bundle).unwrap()).unwrap()).unwrap();
        assert_eq!(
            describe_vm(&vms[1]),
            format!(
                "vm2: kernel ARM zImage (64 bytes), initrd cpio ({} bytes), \
                 cmdline \"console=ttyAMA0 earlycon\", config \"vcpus=4 mem=512M\"",
                vms[1].initrd.as_ref().unwrap().len()
            )
        );
        // A firmware VM, and one with a kernel beside its firmware.
        let fw = VmSpec { firmware: Some(kernel.clone()), ..VmSpec::default() };
        let both = VmSpec { kernel: kernel.clone(), ..fw.clone() };
        run(Command::Bundle { out: bundle.clone(), vms: vec![fw, both] }).unwrap();
        let vms = cpio::check_bundle(&cpio::parse(&fs::read(&bundle).unwrap()).unwrap()).unwrap();
        assert_eq!(describe_vm(&vms[0]), "vm1: firmware (64 bytes)");
        assert_eq!(describe_vm(&vms[1]), "vm2: firmware (64 bytes), kernel ARM zImage (64 bytes)");
        // No temporary file is left beside the output.
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["bundle.cpio", "initrd.cpio", "tree", "zImage"]);

        assert!(run(Command::Check { file: tree.join("init") }).is_err(), "not an archive");
        assert!(run(Command::Tree { out: dir.join("x"), dir: dir.join("missing") }).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
