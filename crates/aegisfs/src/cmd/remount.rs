//! `mount -o remount,ro|rw DIR`: mount(8) calls the helper with `remount`
//! among the options, and so may `aegisfs mount -o remount,...`.
//!
//! A remount changes two things that must agree: the kernel's flags on the
//! mount (it refuses writes with EROFS itself once read-only) and the
//! daemon's state (a frozen daemon has committed everything and writes
//! nothing more, not even atime). The order keeps the image safe whatever
//! fails: going read-only, the daemon freezes first, then the kernel
//! flips; going writable, the kernel flips first, then the daemon thaws.
//! A failing second step undoes the first, so nothing changes.
//!
//! Only `ro`/`rw` and the per-mount flags (`dev`, `suid`, `exec` and their
//! `no` forms) take effect; the mount's other flags are kept as they are
//! (read back with statvfs). Other known options are accepted and ignored,
//! as the kernel's FUSE side ignores them on remount, since mount(8)
//! passes the fstab line along; unknown ones are refused. Root only.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use aegis_fuse::parse_options;

use super::mount::{is_mounted, Args};
use super::{CliError, CliResult};

/// mount(8)'s exit code for a failed mount.
const MOUNT_FAILURE: u8 = 32;

/// Does this option list ask for a remount?
pub fn is_remount(options: &[String]) -> bool {
    options
        .iter()
        .flat_map(|o| o.split(','))
        .any(|o| o.trim() == "remount")
}

pub fn run(a: &Args) -> CliResult<u8> {
    let fail = |msg: String| CliError(msg, MOUNT_FAILURE);
    let mnt = a
        .mountpoint
        .canonicalize()
        .map_err(|e| fail(format!("{}: {e}", a.mountpoint.display())))?;
    if !is_mounted(&mnt) {
        return Err(fail(format!("{}: not a mounted AegisFS", mnt.display())));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(fail(format!("{}: only root may remount", mnt.display())));
    }
    let spec: Vec<&str> = a
        .options
        .iter()
        .flat_map(|o| o.split(','))
        .map(str::trim)
        .filter(|o| !o.is_empty() && *o != "remount" && !is_kernel_fuse_option(o))
        .collect();
    let spec = super::mount::strip_mount8_options(&spec.join(","));
    let parsed = parse_options(&spec, &["nolog", "norecovery"])
        .map_err(|e| fail(format!("{}: {e}", mnt.display())))?;
    let mut flags = current_flags(&mnt).map_err(|e| fail(format!("{}: {e}", mnt.display())))?;
    for o in spec.split(',').map(str::trim) {
        flags = match o {
            "dev" => flags & !libc::MS_NODEV,
            "nodev" => flags | libc::MS_NODEV,
            "suid" => flags & !libc::MS_NOSUID,
            "nosuid" => flags | libc::MS_NOSUID,
            "exec" => flags & !libc::MS_NOEXEC,
            "noexec" => flags | libc::MS_NOEXEC,
            _ => flags,
        };
    }
    // Neither `ro` nor `rw` given: the mount stays as it is.
    let says = |w: &str| spec.split(',').any(|o| o.trim() == w);
    check_fixed(&mnt, &spec).map_err(fail)?;
    let writable = if says("ro") || says("rw") {
        !parsed.mount.read_only
    } else {
        flags & libc::MS_RDONLY == 0
    };
    apply(&mnt, flags, writable).map_err(fail)?;
    Ok(0)
}

/// Options the daemon cannot change while mounted: asked for on a
/// remount, each must be what the mount already has (mount(8) passes the
/// fstab line along, so an unchanged `nolog` is fine), else EINVAL and
/// nothing changes. The atime mode is not among them: the kernel shows
/// `relatime` for a strictatime mount too, so mount(8)'s copy says nothing.
fn check_fixed(mnt: &Path, spec: &str) -> Result<(), String> {
    let Ok(fixed) = aegis_fuse::control::fixed_options(mnt) else {
        // A daemon that cannot say: nothing to compare against.
        return Ok(());
    };
    let has: Vec<&str> = fixed.split(',').filter(|o| !o.is_empty()).collect();
    for o in spec.split(',').map(str::trim) {
        let name = o.split('=').next().unwrap_or(o);
        let fixed_kind = matches!(
            name,
            "nolog"
                | "norecovery"
                | "threads"
                | "allow_other"
                | "allow_root"
                | "auto_unmount"
                | "cache_size"
                | "cache_policy"
                | "dirty_max"
                | "writeback_cache"
                | "nowriteback_cache"
                | "attr_timeout"
                | "entry_timeout"
        );
        // A timeout is compared as a value: `1.0` is the `1` listed.
        let canonical = match o.split_once('=') {
            Some((n @ ("attr_timeout" | "entry_timeout"), v)) => {
                aegis_fuse::options::parse_timeout(n, v)
                    .map(|d| format!("{n}={}", aegis_fuse::options::format_timeout(d)))
                    .unwrap_or_else(|_| o.to_string())
            }
            _ => o.to_string(),
        };
        if fixed_kind && !has.contains(&canonical.as_str()) {
            return Err(format!(
                "{}: mount option '{o}' cannot change on a remount (EINVAL); unmount and mount again",
                mnt.display()
            ));
        }
    }
    Ok(())
}

/// What the kernel shows of a FUSE mount in mountinfo, which mount(8)
/// hands back on a remount: the kernel's own, never ours to change.
fn is_kernel_fuse_option(o: &str) -> bool {
    let name = o.split('=').next().unwrap_or(o);
    matches!(
        name,
        "user_id" | "group_id" | "rootmode" | "max_read" | "blksize" | "fd"
    )
}

/// Freeze then flip, or flip then thaw; undo the first step if the second
/// fails.
fn apply(mnt: &Path, flags: libc::c_ulong, writable: bool) -> Result<(), String> {
    let name = mnt.display();
    let daemon = |w: bool| aegis_fuse::control::set_writable(mnt, w);
    if writable {
        kernel_remount(mnt, flags & !libc::MS_RDONLY).map_err(|e| format!("{name}: {e}"))?;
        if let Err(e) = daemon(true) {
            let _ = kernel_remount(mnt, flags | libc::MS_RDONLY);
            return Err(match e.raw_os_error() {
                Some(libc::EROFS) => format!(
                    "{name}: mounted read-only from the start; unmount it and mount it read-write"
                ),
                _ => format!("{name}: making the filesystem writable: {e}"),
            });
        }
        return Ok(());
    }
    daemon(false).map_err(|e| format!("{name}: committing before read-only: {e}"))?;
    if let Err(e) = kernel_remount(mnt, flags | libc::MS_RDONLY) {
        let _ = daemon(true);
        return Err(match e.raw_os_error() {
            Some(libc::EBUSY) => format!("{name}: files are open for writing (EBUSY)"),
            _ => format!("{name}: {e}"),
        });
    }
    Ok(())
}

/// The mount's flags now, as MS_* bits for a remount that keeps them.
fn current_flags(mnt: &Path) -> std::io::Result<libc::c_ulong> {
    let c = CString::new(mnt.as_os_str().as_bytes())?;
    // SAFETY: statvfs is plain data; the call fills it in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid path, `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut flags: libc::c_ulong = 0;
    for (st_bit, ms_bit) in [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & st_bit != 0 {
            flags |= ms_bit;
        }
    }
    Ok(flags)
}

fn kernel_remount(mnt: &Path, flags: libc::c_ulong) -> std::io::Result<()> {
    let c = CString::new(mnt.as_os_str().as_bytes())?;
    // SAFETY: a remount takes only the target and the flags; the other
    // pointers may be null.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c.as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | flags,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
