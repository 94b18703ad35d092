//! `aegisfs send` and `aegisfs receive`: a snapshot as a stream, and a
//! stream into a dataset, of unmounted pools (the image lock refuses a
//! mounted one). Streams go to a file or a pipe, so `send | ssh host
//! aegisfs receive` works; `send --dump` prints a stream's records.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use aegis_fs::receive::ReceiveOptions;
use aegis_fs::receive_state::ResumeToken;
use aegis_fs::send_stream::{Record, StreamReader};

use super::{CliError, CliResult};

#[derive(clap::Args)]
pub struct SendArgs {
    /// The snapshot: IMAGE[/DATASET]@NAME, or MOUNTPOINT@NAME of a mounted dataset (with --dump: a stream file, or - for stdin).
    pub snapshot: PathBuf,
    /// Send only the changes since this older snapshot of the same dataset (NAME or @NAME).
    #[arg(short = 'i', long = "incremental")]
    pub base: Option<String>,
    /// Write the stream here instead of stdout.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Resume an interrupted receive: the token `receive --token` shows.
    #[arg(short = 't', long = "token")]
    pub token: Option<String>,
    /// Print the records of a stream instead of sending one.
    #[arg(long)]
    pub dump: bool,
}

#[derive(clap::Args)]
pub struct ReceiveArgs {
    /// The dataset: IMAGE/NAME (new for a full stream; the one holding the base for an incremental one).
    pub target: PathBuf,
    /// Read the stream from this file instead of stdin.
    #[arg(short = 'i', long = "input")]
    pub input: Option<PathBuf>,
    /// Roll the dataset back to the stream's base if it changed since.
    #[arg(short = 'F', long)]
    pub force: bool,
    /// Keep what arrived if the stream breaks off, to resume later (send -t).
    #[arg(short = 's', long)]
    pub resumable: bool,
    /// Undo an interrupted receive.
    #[arg(long, conflicts_with_all = ["token", "input", "force", "resumable"])]
    pub abort: bool,
    /// Show the resume token of an interrupted receive.
    #[arg(long, conflicts_with_all = ["input", "force", "resumable"])]
    pub token: bool,
}

/// Progress on a terminal: bytes so far, overwritten in place.
fn progress_line(verb: &'static str) -> impl FnMut(u64) {
    let terminal = std::io::stderr().is_terminal();
    move |bytes| {
        if terminal {
            eprint!("\r{verb} {:.1} MiB", bytes as f64 / (1 << 20) as f64);
        }
    }
}

pub fn send(a: SendArgs) -> CliResult<u8> {
    if a.dump {
        return dump(&a.snapshot);
    }
    let live = super::snapshot::live_target(&a.snapshot)?;
    let base = a
        .base
        .as_deref()
        .map(|b| b.trim_start_matches('@').to_string());
    let token = a
        .token
        .as_deref()
        .map(ResumeToken::parse)
        .transpose()
        .map_err(|e| CliError::new(e.to_string()))?;
    let offline = match live {
        Some(_) => None,
        None => Some(super::snapshot::snapshot_target(&a.snapshot)?),
    };
    // A file is written under a temporary name and renamed when whole:
    // a failed send leaves no partial stream, nor clobbers an old one.
    let partial = a.output.as_ref().map(|p| {
        let mut s = p.clone().into_os_string();
        s.push(".partial");
        PathBuf::from(s)
    });
    let out: Box<dyn Write> = match &partial {
        Some(p) => {
            Box::new(File::create(p).map_err(|e| CliError::new(format!("{}: {e}", p.display())))?)
        }
        None if std::io::stdout().is_terminal() => {
            return Err(CliError::new(
                "refusing to write a stream to a terminal: use -o FILE or a pipe",
            ))
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let sent = match (&live, &offline) {
        (Some((mnt, snap)), _) => live_send(mnt, snap, base.as_deref(), a.token.as_deref(), out),
        (None, Some((image, dataset, snap))) => {
            send_to(image, dataset, snap, base.as_deref(), token.as_ref(), out)
        }
        (None, None) => unreachable!("one of the two was found above"),
    };
    if let (Some(tmp), Some(dest)) = (&partial, &a.output) {
        let placed = sent.as_ref().map(|_| fs::rename(tmp, dest));
        if !matches!(placed, Ok(Ok(()))) {
            let _ = fs::remove_file(tmp);
        }
        if let Ok(Err(e)) = placed {
            return Err(CliError::new(format!("{}: {e}", dest.display())));
        }
    }
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    eprintln!(
        "sent {}{}: {}",
        a.snapshot.display(),
        base.map(|b| format!(" since @{b}")).unwrap_or_default(),
        sent?
    );
    Ok(0)
}

fn send_to(
    image: &Path,
    dataset: &Option<String>,
    snap: &str,
    base: Option<&str>,
    token: Option<&ResumeToken>,
    out: Box<dyn Write>,
) -> CliResult<String> {
    let store = super::dataset::open_locked(image, false)?;
    let where_ = super::snapshot::shown(image, dataset);
    let id = super::snapshot::dataset_id(&store, dataset)?;
    let mut progress = progress_line("sent");
    store
        .send(
            id,
            snap,
            base,
            token,
            BufWriter::with_capacity(1 << 20, out),
            &mut progress,
        )
        .map(|s| format!("{} records, {} bytes", s.records, s.bytes))
        .map_err(|e| CliError::new(format!("{where_}@{snap}: {e}")))
}

/// Ask the daemon serving `mnt` to write the stream into a FIFO made for
/// the purpose, and copy it to `out` as it comes. The command runs in a
/// thread of its own: it returns only when the daemon is done. A daemon
/// that refuses before it opens the FIFO is answered by opening its
/// write end here, so the reader sees the end of input at once.
fn live_send(
    mnt: &Path,
    snap: &str,
    base: Option<&str>,
    token: Option<&str>,
    mut out: Box<dyn Write>,
) -> CliResult<String> {
    let dir = tempfile::tempdir().map_err(|e| CliError::new(format!("a FIFO's directory: {e}")))?;
    let fifo = dir.path().join("stream");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())
        .map_err(|_| CliError::new("a FIFO path with NUL"))?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(CliError::new(format!("{}: {e}", fifo.display())));
    }
    let words: Vec<String> = vec![
        "send".into(),
        snap.into(),
        base.unwrap_or("-").into(),
        token.unwrap_or("-").into(),
        fifo.display().to_string(),
    ];
    let (mnt_owned, fifo_owned) = (mnt.to_path_buf(), fifo.clone());
    let asked = std::thread::spawn(move || {
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let reply = aegis_fuse::control::command(&mnt_owned, &w);
        if !matches!(reply, Ok(Ok(_))) {
            // Unblock the reader if the daemon never opened the FIFO; if
            // it did (and failed later), the reader has had its end of
            // input and is gone, and this open fails at once (O_NONBLOCK).
            use std::os::unix::fs::OpenOptionsExt;
            let _ = fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo_owned);
        }
        reply
    });
    let copied = File::open(&fifo).and_then(|mut f| std::io::copy(&mut f, &mut out));
    let flushed = out.flush();
    let shown = mnt.display();
    let reply = asked
        .join()
        .map_err(|_| CliError::new("the command thread panicked"))?;
    match reply {
        Ok(Ok(text)) => {
            copied.map_err(|e| CliError::new(format!("{}: {e}", fifo.display())))?;
            flushed.map_err(|e| CliError::new(format!("writing the stream: {e}")))?;
            Ok(text)
        }
        Ok(Err((_, message))) => Err(CliError::new(format!("{shown}@{snap}: {message}"))),
        Err(e) => Err(CliError::new(format!("{shown}: {e}"))),
    }
}

pub fn receive(a: ReceiveArgs) -> CliResult<u8> {
    let (image, name) = super::dataset::named_target(&a.target)?;
    aegis_fs::dataset_admin::validate_name(&name).map_err(|e| CliError::new(e.to_string()))?;
    let shown = format!("{}/{name}", image.display());
    let input: Box<dyn Read> = match &a.input {
        Some(p) => {
            Box::new(File::open(p).map_err(|e| CliError::new(format!("{}: {e}", p.display())))?)
        }
        None if !a.abort && !a.token && std::io::stdin().is_terminal() => {
            return Err(CliError::new(
                "no stream: give -i FILE or pipe one in (aegisfs send ... | aegisfs receive ...)",
            ))
        }
        None => Box::new(std::io::stdin().lock()),
    };
    let store = super::dataset::open_locked(&image, !a.token)?;
    if a.token {
        let id = store
            .dataset_id(&name)
            .map_err(|e| CliError::new(format!("{shown}: {e}")))?;
        return match store.receive_state(id) {
            Ok(Some(st)) => {
                println!("{}", st.token());
                Ok(0)
            }
            Ok(None) => Err(CliError::new(format!("{shown}: no receive is in progress"))),
            Err(e) => Err(CliError::new(format!("{shown}: {e}"))),
        };
    }
    if a.abort {
        let aborted = store.receive_abort(&name);
        let closed = store.shutdown();
        aborted.map_err(|e| CliError::new(format!("{shown}: {e}")))?;
        closed.map_err(|e| CliError::new(format!("{shown}: {e}")))?;
        println!("undid the receive into {shown}");
        return Ok(0);
    }
    let opts = ReceiveOptions {
        force: a.force,
        resumable: a.resumable,
    };
    let mut progress = progress_line("received");
    let got = store.receive(
        &name,
        BufReader::with_capacity(1 << 20, input),
        opts,
        &mut progress,
    );
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let kept = match &got {
        Err(_) => store
            .dataset_id(&name)
            .ok()
            .and_then(|id| store.receive_state(id).ok().flatten()),
        Ok(_) => None,
    };
    let closed = store.shutdown();
    let got = got.map_err(|e| {
        let resume = kept
            .map(|st| {
                format!(
                    "; resume with `aegisfs send -t {}`, or run `aegisfs receive --abort {shown}`",
                    st.token()
                )
            })
            .unwrap_or_default();
        CliError::new(format!("{shown}: {e}{resume}"))
    })?;
    closed.map_err(|e| CliError::new(format!("{shown}: {e}")))?;
    println!(
        "received {shown}@{} ({}, {} records, {} bytes)",
        got.snapshot,
        if got.incremental {
            "incremental"
        } else {
            "full"
        },
        got.records,
        got.bytes
    );
    Ok(0)
}

/// `send --dump FILE|-`: one line per record; a damaged stream prints
/// what came before the damage and fails.
fn dump(path: &Path) -> CliResult<u8> {
    let input: Box<dyn Read> = match path.as_os_str() == "-" {
        true => Box::new(std::io::stdin().lock()),
        false => Box::new(
            File::open(path).map_err(|e| CliError::new(format!("{}: {e}", path.display())))?,
        ),
    };
    let mut rd = StreamReader::new(BufReader::with_capacity(1 << 20, input));
    let mut out = std::io::stdout().lock();
    loop {
        let at = rd.bytes();
        let rec = match rd.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(0),
            Err(e) => return Err(CliError::new(format!("{}: {e}", path.display()))),
        };
        match writeln!(out, "{at:>12} {}", describe(&rec)) {
            Ok(()) => {}
            // `send --dump | head`: the reader has what it wanted.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
            Err(e) => return Err(CliError::new(format!("stdout: {e}"))),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn describe(rec: &Record) -> String {
    match rec {
        Record::Begin(b) => format!(
            "BEGIN snapshot {:?} guid {:016x} base {:016x} txg {} block size {} features {:#x}{}",
            b.name,
            b.snapshot_guid,
            b.base_guid,
            b.source_txg,
            b.block_size,
            b.features,
            match b.resume_after.is_empty() {
                true => String::new(),
                false => format!(" resumed after {}", hex(&b.resume_after)),
            }
        ),
        Record::Put { key, value } => format!("PUT  {} ({} bytes)", hex(key), value.len()),
        Record::Data {
            key,
            len,
            prealloc,
            block,
        } => format!(
            "DATA {} len {len}{}{}",
            hex(key),
            if *prealloc { " preallocated" } else { "" },
            block
                .as_ref()
                .map(|b| format!(" {:?} {} stored bytes", b.form.compression, b.stored.len()))
                .unwrap_or_default()
        ),
        Record::Del { key } => format!("DEL  {}", hex(key)),
        Record::End {
            records,
            data_bytes,
        } => format!("END  {records} records, {data_bytes} block bytes"),
    }
}
