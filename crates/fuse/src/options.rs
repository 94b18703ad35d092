//! Mount configuration and the `-o opt,opt=value,...` parser.
//!
//! [`MountConfig`] says how to mount (kernel flags, who may access the
//! mount, worker threads). [`parse_options`] turns a `mount -o` style list
//! into a `MountConfig` plus the options that belong to the filesystem
//! itself ([`FsOption`]): `ro`/`rw` and the atime policy (`noatime`,
//! `relatime`, `strictatime`) always, and any names the caller declares.
//! `ro` and `noatime` land in both places: the kernel enforces them at the
//! VFS level (EROFS before a request is even sent) and the filesystem needs
//! them to open its store read-only or to stop updating atime, which under
//! FUSE is the filesystem's own business.
//!
//! The FUSE cache settings are mount options too: `writeback_cache` /
//! `nowriteback_cache`, `attr_timeout=SECONDS` and `entry_timeout=SECONDS`
//! (defaults and the measurements behind them: the adapter's INIT module
//! and `docs/perf.md`, "Issue 12: FUSE settings").
//!
//! Invariants: every option is either understood or rejected with an error
//! naming it; later options override earlier ones (`ro,rw` is read-write),
//! as with mount(8); `default_permissions` is accepted and always on, since
//! the adapter relies on the kernel for permission checks.

use std::time::Duration;

use crate::error::OptionError;

/// Who may use the mounted filesystem besides the user who mounted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessPolicy {
    /// Only the mounting user (FUSE's default).
    #[default]
    Owner,
    /// Every user (`allow_other`); the kernel still checks the mode bits.
    AllowOther,
    /// The mounting user and root (`allow_root`).
    AllowRoot,
}

/// How to mount and serve a filesystem. `Default` is a read-write mount
/// named `aegisfs`, private to the mounting user, `nodev,nosuid`, one
/// two worker threads per CPU (at least 2), no writeback cache, 1 s
/// attribute and 10 s entry timeouts, and signal handling on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountConfig {
    /// Source shown in /proc/mounts (`fsname=`), e.g. the image path.
    pub fsname: String,
    /// Filesystem subtype (`subtype=`): the type reads `fuse.<subtype>` when
    /// mounted through fusermount3.
    pub subtype: String,
    /// Mount read-only (`ro`).
    pub read_only: bool,
    /// Set the kernel's `noatime` flag.
    pub noatime: bool,
    /// `strictatime`: every read must reach the filesystem so that it can
    /// update atime, so files are opened for direct I/O (no page cache)
    /// instead of keeping their cached pages.
    pub strictatime: bool,
    pub access: AccessPolicy,
    /// Honour device files (`dev`); off by default, as FUSE does.
    pub dev: bool,
    /// Honour setuid/setgid bits (`suid`); off by default, as FUSE does.
    pub suid: bool,
    /// Allow executing files (`exec`); on by default.
    pub exec: bool,
    /// Mount as `fuseblk` of this block device (root only) instead of
    /// `fuse`: `sync`/`syncfs` then reach the filesystem and umount waits
    /// for its last commit. The CLI sets it for block devices and for
    /// images with `-o fuseblk` (through a loop device).
    pub blkdev: Option<std::path::PathBuf>,
    /// `fuseblk` asked for (`Some(true)`), refused (`nofuseblk`), or left
    /// to the caller's default (`None`); the caller finds the device.
    pub fuseblk: Option<bool>,
    /// Options of this mount that a remount cannot change, comma
    /// separated as given (the caller's daemon options among them); the
    /// remount helper reads them back to refuse a change (EINVAL).
    pub fixed_options: String,
    /// Let fusermount3 unmount if this process dies (`auto_unmount`).
    /// Needs `allow_other` or `allow_root`.
    pub auto_unmount: bool,
    /// Worker threads serving requests (`threads=N`); `None` picks
    /// [`default_threads`].
    pub threads: Option<usize>,
    /// Whether the blocking [`mount`](crate::mount) catches SIGTERM, SIGINT
    /// and SIGHUP to unmount cleanly. [`spawn`](crate::spawn) never does.
    pub handle_signals: bool,
    /// Ask the kernel for its writeback cache (`writeback_cache`, off by
    /// default: `nowriteback_cache`). Writes then stay in the page cache
    /// until writeback, close or fsync, and the kernel keeps size and
    /// mtime meanwhile; see the adapter's INIT module for what it costs.
    pub writeback_cache: bool,
    /// How long the kernel may cache attributes (`attr_timeout=SECONDS`).
    pub attr_timeout: Duration,
    /// How long the kernel may cache name lookups, negative ones excepted
    /// (`entry_timeout=SECONDS`).
    pub entry_timeout: Duration,
}

impl Default for MountConfig {
    fn default() -> Self {
        MountConfig {
            fsname: "aegisfs".to_string(),
            subtype: "aegisfs".to_string(),
            read_only: false,
            noatime: false,
            strictatime: false,
            access: AccessPolicy::Owner,
            dev: false,
            suid: false,
            exec: true,
            blkdev: None,
            fixed_options: String::new(),
            fuseblk: None,
            auto_unmount: false,
            threads: None,
            handle_signals: true,
            writeback_cache: false,
            attr_timeout: DEFAULT_ATTR_TIMEOUT,
            entry_timeout: DEFAULT_ENTRY_TIMEOUT,
        }
    }
}

/// Attribute timeout when none is configured: 1 s, as libfuse's. The
/// filesystem changes atime on reads by itself (relatime, strictatime),
/// and stat must show that within a second; longer would be faster for
/// warm stats (see the adapter's INIT module) but hide those changes.
pub const DEFAULT_ATTR_TIMEOUT: Duration = Duration::from_secs(1);

/// Entry timeout when none is configured: 10 s. Names change only through
/// this mount, and the kernel updates its dentries on the way, so a longer
/// timeout hides nothing; it saves a LOOKUP per path component once a
/// second has passed (warm stats of 10,000 files 1.3–2.4× in three runs;
/// tar moved within the noise).
pub const DEFAULT_ENTRY_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest `attr_timeout=` / `entry_timeout=` accepted, in seconds.
pub const MAX_TIMEOUT_SECS: u64 = 3600;

/// Largest `threads=` accepted: more would only add idle threads and file
/// descriptors, the kernel queue does not get faster.
pub const MAX_THREADS: usize = 1024;

/// Worker threads used when none are configured: two per CPU, at least 2,
/// so one slow request (a commit in `fsync`, a read from the device) does
/// not stall every other. Measured on 2 CPUs (docs/perf.md, "Issue 12:
/// FUSE settings"), 4 threads against 2 in three comparisons: random
/// 4 KiB reads 1.22–3.2× and sequential reads 1.06–1.26× as fast, four
/// processes stat'ing at once 0.77–0.87× (the namespace lock); the
/// single-process metadata rows gained in one run (1.1–1.5×), not in the
/// other. 8 gained nothing over 4.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_mul(2))
        .unwrap_or(2)
        .clamp(2, MAX_THREADS)
}

impl MountConfig {
    /// The number of worker threads this configuration asks for.
    pub fn effective_threads(&self) -> usize {
        self.threads.unwrap_or_else(default_threads)
    }

    /// Apply a comma-separated option list on top of this configuration and
    /// return the options meant for the filesystem, in the order given.
    /// `fs_options` names further options (without `=value`) that belong to
    /// the filesystem; they are passed through untouched. Call it once per
    /// `-o` flag: later calls override earlier ones.
    pub fn apply_options(
        &mut self,
        spec: &str,
        fs_options: &[&str],
    ) -> Result<Vec<FsOption>, OptionError> {
        // Work on a copy so a bad list leaves `self` as it was.
        let mut next = self.clone();
        let mut fs = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (item, None),
            };
            if next.apply_builtin(name, value)? {
                if FS_BUILTINS.contains(&name) || fs_options.contains(&name) {
                    fs.push(FsOption::new(name, value));
                }
            } else if FS_BUILTINS.contains(&name) || fs_options.contains(&name) {
                fs.push(FsOption::new(name, value));
            } else {
                return Err(OptionError::Unknown(item.to_string()));
            }
        }
        next.check()?;
        *self = next;
        Ok(fs)
    }

    /// Reject combinations that cannot be mounted.
    fn check(&self) -> Result<(), OptionError> {
        if self.auto_unmount && self.access == AccessPolicy::Owner {
            // fuser hands auto_unmount to fusermount3, which enforces
            // its own access rule only with allow_other/allow_root.
            return Err(OptionError::Conflict(
                "auto_unmount",
                "the default access (add allow_other or allow_root)",
            ));
        }
        Ok(())
    }

    /// Handle one option that concerns the mount. Returns `false` if the
    /// name is not a mount option.
    fn apply_builtin(&mut self, name: &str, value: Option<&str>) -> Result<bool, OptionError> {
        let flag = |on: bool| -> Result<bool, OptionError> {
            if value.is_some() {
                Err(OptionError::UnexpectedValue(name.to_string()))
            } else {
                Ok(on)
            }
        };
        match name {
            "ro" => self.read_only = flag(true)?,
            "rw" => self.read_only = !flag(true)?,
            "noatime" => {
                self.noatime = flag(true)?;
                self.strictatime = false;
            }
            "relatime" => {
                self.noatime = !flag(true)?;
                self.strictatime = false;
            }
            "strictatime" => {
                self.noatime = !flag(true)?;
                self.strictatime = true;
            }
            "allow_other" => {
                flag(true)?;
                if self.access == AccessPolicy::AllowRoot {
                    return Err(OptionError::Conflict("allow_other", "allow_root"));
                }
                self.access = AccessPolicy::AllowOther;
            }
            "allow_root" => {
                flag(true)?;
                if self.access == AccessPolicy::AllowOther {
                    return Err(OptionError::Conflict("allow_other", "allow_root"));
                }
                self.access = AccessPolicy::AllowRoot;
            }
            "default_permissions" => {
                flag(true)?;
            }
            "dev" => self.dev = flag(true)?,
            "nodev" => self.dev = !flag(true)?,
            "suid" => self.suid = flag(true)?,
            "nosuid" => self.suid = !flag(true)?,
            "exec" => self.exec = flag(true)?,
            "noexec" => self.exec = !flag(true)?,
            "auto_unmount" => self.auto_unmount = flag(true)?,
            "fuseblk" => self.fuseblk = Some(flag(true)?),
            "nofuseblk" => self.fuseblk = Some(!flag(true)?),
            "fsname" => self.fsname = required(name, value)?.to_string(),
            "subtype" => self.subtype = parse_subtype(name, required(name, value)?)?,
            "threads" => self.threads = Some(parse_threads(name, required(name, value)?)?),
            "writeback_cache" => self.writeback_cache = flag(true)?,
            "nowriteback_cache" => self.writeback_cache = !flag(true)?,
            "attr_timeout" => self.attr_timeout = parse_timeout(name, required(name, value)?)?,
            "entry_timeout" => self.entry_timeout = parse_timeout(name, required(name, value)?)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Options that always concern the filesystem as well.
const FS_BUILTINS: &[&str] = &["ro", "rw", "noatime", "relatime", "strictatime"];

/// The value of `subtype`: letters, digits, '.', '_' or '-'.
fn parse_subtype(name: &str, v: &str) -> Result<String, OptionError> {
    let ok = v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok {
        return Err(OptionError::InvalidValue {
            name: name.to_string(),
            value: v.to_string(),
            reason: "use letters, digits, '.', '_' or '-'",
        });
    }
    Ok(v.to_string())
}

/// The value of `threads`: 1 to [`MAX_THREADS`].
fn parse_threads(name: &str, v: &str) -> Result<usize, OptionError> {
    let invalid = |reason| OptionError::InvalidValue {
        name: name.to_string(),
        value: v.to_string(),
        reason,
    };
    let n: usize = v.parse().map_err(|_| invalid("not a number"))?;
    if n == 0 || n > MAX_THREADS {
        return Err(invalid("must be between 1 and 1024"));
    }
    Ok(n)
}

/// The value of `attr_timeout` / `entry_timeout`: seconds, a decimal
/// number from 0 to [`MAX_TIMEOUT_SECS`] with at most 9 digits after the
/// point (`0`, `0.5`, `30`). No sign, exponent, `inf` or `nan`.
pub fn parse_timeout(name: &str, v: &str) -> Result<Duration, OptionError> {
    let invalid = |reason| OptionError::InvalidValue {
        name: name.to_string(),
        value: v.to_string(),
        reason,
    };
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (v.contains('.') && frac.is_empty()) {
        return Err(invalid("not a number of seconds (e.g. 1 or 0.5)"));
    }
    if frac.len() > 9 {
        return Err(invalid("at most 9 digits after the point"));
    }
    let secs: u64 = int
        .parse()
        .map_err(|_| invalid("must be between 0 and 3600 seconds"))?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().expect("9 ASCII digits")
    };
    let d = Duration::new(secs, nanos);
    if d > Duration::from_secs(MAX_TIMEOUT_SECS) {
        return Err(invalid("must be between 0 and 3600 seconds"));
    }
    Ok(d)
}

/// A timeout as an option value: whole seconds without a point, else the
/// shortest decimal that [`parse_timeout`] reads back as the same value.
pub fn format_timeout(d: Duration) -> String {
    let ns = d.subsec_nanos();
    if ns == 0 {
        return d.as_secs().to_string();
    }
    let frac = format!("{ns:09}");
    format!("{}.{}", d.as_secs(), frac.trim_end_matches('0'))
}

fn required<'a>(name: &str, value: Option<&'a str>) -> Result<&'a str, OptionError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(OptionError::MissingValue(name.to_string())),
    }
}

/// One option for the filesystem itself, as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsOption {
    pub name: String,
    pub value: Option<String>,
}

impl FsOption {
    fn new(name: &str, value: Option<&str>) -> FsOption {
        FsOption {
            name: name.to_string(),
            value: value.map(str::to_string),
        }
    }
}

/// The result of [`parse_options`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedOptions {
    pub mount: MountConfig,
    /// Options for the filesystem, in the order given.
    pub fs: Vec<FsOption>,
}

/// Parse a `-o` style list (`ro,allow_other,threads=4,fsname=/img`) on top
/// of [`MountConfig::default`]. `fs_options` names further options the
/// filesystem understands; anything else unknown is an error naming it.
pub fn parse_options(spec: &str, fs_options: &[&str]) -> Result<ParsedOptions, OptionError> {
    let mut mount = MountConfig::default();
    let fs = mount.apply_options(spec, fs_options)?;
    Ok(ParsedOptions { mount, fs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(fs: &[FsOption]) -> Vec<String> {
        fs.iter()
            .map(|o| match &o.value {
                Some(v) => format!("{}={v}", o.name),
                None => o.name.clone(),
            })
            .collect()
    }

    #[test]
    fn empty_list_is_the_default() {
        let p = parse_options("", &[]).unwrap();
        assert_eq!(p.mount, MountConfig::default());
        assert!(p.fs.is_empty());
        let p = parse_options(" , ,", &[]).unwrap();
        assert_eq!(p.mount, MountConfig::default());
    }

    #[test]
    fn mount_flags() {
        let p = parse_options(
            "ro,allow_other,default_permissions,fsname=/tmp/img,subtype=aegis.test,dev,suid,noexec,auto_unmount,threads=3",
            &[],
        )
        .unwrap();
        let m = p.mount;
        assert!(m.read_only && m.dev && m.suid && !m.exec && m.auto_unmount);
        assert_eq!(m.access, AccessPolicy::AllowOther);
        assert_eq!(m.fsname, "/tmp/img");
        assert_eq!(m.subtype, "aegis.test");
        assert_eq!(m.threads, Some(3));
        assert_eq!(m.effective_threads(), 3);
        assert_eq!(names(&p.fs), ["ro"]);
    }

    #[test]
    fn later_options_win() {
        let p = parse_options("ro,rw,nodev,dev,dev,nodev,noatime,relatime", &[]).unwrap();
        assert!(!p.mount.read_only);
        assert!(!p.mount.dev);
        assert!(!p.mount.noatime);
        assert_eq!(names(&p.fs), ["ro", "rw", "noatime", "relatime"]);
        let p = parse_options("strictatime,noatime", &[]).unwrap();
        assert!(p.mount.noatime);
    }

    #[test]
    fn filesystem_options_pass_through() {
        let p = parse_options(
            "compress=zstd,noatime,sync,allow_root",
            &["compress", "sync"],
        )
        .unwrap();
        assert_eq!(names(&p.fs), ["compress=zstd", "noatime", "sync"]);
        assert!(p.mount.noatime);
        assert_eq!(p.mount.access, AccessPolicy::AllowRoot);
        // A declared name that is also a mount option reaches both.
        let p = parse_options("exec", &["exec"]).unwrap();
        assert!(p.mount.exec);
        assert_eq!(names(&p.fs), ["exec"]);
    }

    #[test]
    fn errors_name_the_option() {
        let e = parse_options("ro,bogus=1", &[]).unwrap_err();
        assert_eq!(e, OptionError::Unknown("bogus=1".into()));
        assert!(e.to_string().contains("bogus"));
        assert_eq!(
            parse_options("ro=1", &[]).unwrap_err(),
            OptionError::UnexpectedValue("ro".into())
        );
        assert_eq!(
            parse_options("fsname", &[]).unwrap_err(),
            OptionError::MissingValue("fsname".into())
        );
        assert_eq!(
            parse_options("fsname=", &[]).unwrap_err(),
            OptionError::MissingValue("fsname".into())
        );
        for bad in [
            "threads=0",
            "threads=x",
            "threads=-1",
            "threads=1025",
            "subtype=a/b",
        ] {
            let e = parse_options(bad, &[]).unwrap_err();
            assert!(
                matches!(e, OptionError::InvalidValue { .. }),
                "{bad}: {e:?}"
            );
            let name = bad.split('=').next().unwrap();
            assert!(e.to_string().contains(name), "{e}");
        }
        assert!(matches!(
            parse_options("allow_other,allow_root", &[]).unwrap_err(),
            OptionError::Conflict(..)
        ));
        assert!(matches!(
            parse_options("auto_unmount", &[]).unwrap_err(),
            OptionError::Conflict(..)
        ));
    }

    #[test]
    fn apply_options_accumulates() {
        let mut m = MountConfig::default();
        assert_eq!(m.apply_options("ro", &[]).unwrap().len(), 1);
        m.apply_options("threads=5", &[]).unwrap();
        assert!(m.read_only);
        assert_eq!(m.threads, Some(5));
        let before = m.clone();
        assert!(m.apply_options("rw,threads=7,nonsense", &[]).is_err());
        assert_eq!(m, before);
    }

    #[test]
    fn fuse_cache_settings() {
        let d = parse_options("", &[]).unwrap().mount;
        assert!(!d.writeback_cache);
        assert_eq!(d.attr_timeout, DEFAULT_ATTR_TIMEOUT);
        assert_eq!(d.entry_timeout, DEFAULT_ENTRY_TIMEOUT);
        let m = parse_options("writeback_cache,attr_timeout=0.25,entry_timeout=30", &[])
            .unwrap()
            .mount;
        assert!(m.writeback_cache);
        assert_eq!(m.attr_timeout, Duration::from_millis(250));
        assert_eq!(m.entry_timeout, Duration::from_secs(30));
        let m = parse_options("writeback_cache,nowriteback_cache,attr_timeout=0", &[])
            .unwrap()
            .mount;
        assert!(!m.writeback_cache);
        assert_eq!(m.attr_timeout, Duration::ZERO);
        for (v, want) in [
            ("3600", Duration::from_secs(3600)),
            ("0.000000001", Duration::from_nanos(1)),
            ("1.5", Duration::from_millis(1500)),
            ("007", Duration::from_secs(7)),
        ] {
            assert_eq!(parse_timeout("attr_timeout", v).unwrap(), want, "{v}");
        }
        for d in [
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_nanos(1),
        ] {
            assert_eq!(parse_timeout("x", &format_timeout(d)).unwrap(), d);
        }
        assert_eq!(format_timeout(Duration::from_secs(2)), "2");
        assert_eq!(format_timeout(Duration::from_millis(250)), "0.25");
    }

    #[test]
    fn bad_fuse_cache_settings_name_the_option() {
        for bad in [
            "attr_timeout=x",
            "attr_timeout=-1",
            "attr_timeout=+1",
            "attr_timeout=1e3",
            "attr_timeout=inf",
            "attr_timeout=nan",
            "attr_timeout=.5",
            "attr_timeout=5.",
            "attr_timeout=3600.5",
            "attr_timeout=3601",
            "attr_timeout=99999999999999999999999",
            "attr_timeout=0.0000000001",
            "entry_timeout=1 s",
            "entry_timeout=4000",
        ] {
            let e = parse_options(bad, &[]).unwrap_err();
            let name = bad.split('=').next().unwrap();
            assert!(
                matches!(&e, OptionError::InvalidValue { name: n, .. } if n == name),
                "{bad}: {e:?}"
            );
            assert!(e.to_string().contains(name), "{e}");
        }
        assert_eq!(
            parse_options("attr_timeout", &[]).unwrap_err(),
            OptionError::MissingValue("attr_timeout".into())
        );
        assert_eq!(
            parse_options("entry_timeout=", &[]).unwrap_err(),
            OptionError::MissingValue("entry_timeout".into())
        );
        assert_eq!(
            parse_options("writeback_cache=1", &[]).unwrap_err(),
            OptionError::UnexpectedValue("writeback_cache".into())
        );
        assert_eq!(
            parse_options("nowriteback_cache=0", &[]).unwrap_err(),
            OptionError::UnexpectedValue("nowriteback_cache".into())
        );
    }

    #[test]
    fn default_threads_at_least_two() {
        assert!(default_threads() >= 2);
        assert!(MountConfig::default().effective_threads() >= 2);
    }
}
