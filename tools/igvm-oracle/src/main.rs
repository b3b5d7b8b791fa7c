// SPDX-License-Identifier: GPL-2.0-or-later
//
// igvm-oracle: what the igvm crate (the reference implementation of the IGVM
// format, microsoft/igvm on crates.io) says about an IGVM file, as JSON lines
// for igvm-harness (harness/reference/oracle.py).
//
//   igvm-oracle version
//       {"oracle":..,"features":[..]}
//   igvm-oracle parse FILE... | parse -
//       per file: the parser's verdict with no isolation filter ("any") and
//       with each platform's filter, the error (variant and message), the
//       IGVMAPI code the crate's C API gives ("abort" where the parse panics:
//       a panic cannot unwind out of the C API), and the header counts
//   igvm-oracle snp-digest FILE... | snp-digest -
//       per file: the crate's SEV-SNP launch digest for the file's SEV-SNP
//       platform (igvm::measurement::generate_snp_measurement)
//   igvm-oracle corim build|check|embed|read ...
//       the crate's Launch Measurement CoRIM, its CoRIM library's verdict on a
//       document and a COSE_Sign1 envelope, its serializer, and the CoRIM
//       headers its parser reads (src/corim.rs)
//
// `-` reads file names from stdin, one per line, so that one process answers
// for a whole corpus.  A file is read whole, after its size is checked
// against MAX_FILE.  A panic inside the crate is caught and reported
// ({"panic": message}): for an oracle that is a finding, not a crash.

use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::panic;
use std::process::ExitCode;

mod corim;
mod json;

use json::{hex, json_str};

use igvm::{IgvmDirectiveHeader, IgvmFile, IgvmPlatformHeader, IsolationType};
use igvm_defs::IgvmPlatformType;

/// The IGVM fixed header's total_file_size is a u32: nothing larger is a file.
const MAX_FILE: u64 = u32::MAX as u64;

/// Bound on one parameter area the SNP measurement walks: the crate measures an
/// UNMEASURED page per 4 KiB of a ParameterInsert's area with no bound of its
/// own (measurement/snp.rs), so a header claiming 2^62 bytes would run for
/// years.  Larger areas are refused here, before the crate is asked.
const MAX_MEASURED_AREA: u64 = 1 << 30;

/// The isolation filters asked, with the harness's platform names.
const FILTERS: [(&str, IsolationType); 4] = [
    ("native", IsolationType::NotIsolated),
    ("sev", IsolationType::Sev),
    ("sev-es", IsolationType::SevEs),
    ("sev-snp", IsolationType::Snp),
];

/// The error's variant name: the leading identifier of its Debug form
/// (`InvalidBinaryDirectiveHeader(InvalidPageDataType)` -> both names).
pub(crate) fn variant(debug: &str) -> (String, Option<String>) {
    let head: String = debug.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    let rest = &debug[head.len()..];
    let inner = rest
        .strip_prefix('(')
        .map(|r| r.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>())
        .filter(|s| !s.is_empty() && s.chars().next().is_some_and(|c| c.is_uppercase()));
    (head, inner)
}

pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

pub(crate) fn read_file(path: &str) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE {
        return Err(format!("{} bytes: larger than an IGVM file can be ({MAX_FILE})", meta.len()));
    }
    std::fs::read(path).map_err(|e| e.to_string())
}

/// One verdict of IgvmFile::new_from_binary as a JSON object.
fn verdict(out: &mut String, data: &[u8], filter: Option<IsolationType>) {
    let result = panic::catch_unwind(|| match IgvmFile::new_from_binary(data, filter) {
        Ok(f) => Ok([f.platforms().len(), f.initializations().len(), f.directives().len()]),
        Err(e) => Err((format!("{e:?}"), e.to_string())),
    });
    match result {
        Ok(Ok(counts)) => {
            let _ = write!(
                out,
                "{{\"ok\":true,\"platforms\":{},\"initializations\":{},\"directives\":{}}}",
                counts[0], counts[1], counts[2]
            );
        }
        Ok(Err((debug, message))) => {
            let (name, inner) = variant(&debug);
            out.push_str("{\"ok\":false,\"error\":");
            json_str(out, &name);
            out.push_str(",\"inner\":");
            match inner {
                Some(i) => json_str(out, &i),
                None => out.push_str("null"),
            }
            out.push_str(",\"message\":");
            json_str(out, &message);
            out.push_str(",\"debug\":");
            json_str(out, &debug);
            out.push('}');
        }
        Err(payload) => {
            out.push_str("{\"ok\":false,\"panic\":");
            json_str(out, &panic_message(payload));
            out.push('}');
        }
    }
}

/// The crate's C API verdict: igvm_new_from_binary's handle (> 0) or IGVMAPI code.
fn c_api_code(data: &[u8]) -> Option<i32> {
    let len = u32::try_from(data.len()).ok()?;
    panic::catch_unwind(|| {
        // SAFETY: `data` is a live slice of exactly `len` bytes.
        let handle = unsafe { igvm::c_api::igvm_new_from_binary(data.as_ptr(), len) };
        if handle > 0 {
            igvm::c_api::igvm_free(handle);
            0
        } else {
            handle
        }
    })
    .ok()
}

/// The answer's opening (`{"file":...`) and the file's bytes, or the whole
/// answer (`{"file":...,"read_error":...}`) when it cannot be read.
fn open(path: &str) -> Result<(String, Vec<u8>), String> {
    let mut out = String::from("{\"file\":");
    json_str(&mut out, path);
    match read_file(path) {
        Ok(data) => Ok((out, data)),
        Err(e) => {
            out.push_str(",\"read_error\":");
            json_str(&mut out, &e);
            out.push('}');
            Err(out)
        }
    }
}

fn parse_one(path: &str) -> String {
    let (mut out, data) = match open(path) {
        Ok(opened) => opened,
        Err(answer) => return answer,
    };
    let _ = write!(out, ",\"size\":{},\"any\":", data.len());
    let mark = out.len();
    verdict(&mut out, &data, None);
    // The C API runs the same unfiltered parse inside an extern "C" function,
    // where a panic cannot unwind: it aborts the process (QEMU included).
    // Asked only when the parse did not panic; otherwise its answer is "abort".
    let c_api_aborts = out[mark..].starts_with("{\"ok\":false,\"panic\"");
    for (name, filter) in FILTERS {
        out.push(',');
        json_str(&mut out, name);
        out.push(':');
        verdict(&mut out, &data, Some(filter));
    }
    out.push_str(",\"c_api\":");
    if c_api_aborts {
        out.push_str("\"abort\"}");
        return out;
    }
    match c_api_code(&data) {
        Some(code) => {
            let _ = write!(out, "{code}");
        }
        None => out.push_str("null"),
    }
    out.push('}');
    out
}

/// Refuse what the crate's measurement would walk for too long (MAX_MEASURED_AREA).
pub(crate) fn check_measurable(file: &IgvmFile) -> Result<(), String> {
    for d in file.directives() {
        if let IgvmDirectiveHeader::ParameterArea { number_of_bytes, .. } = d {
            if *number_of_bytes > MAX_MEASURED_AREA {
                return Err(format!(
                    "bound: a parameter area of {number_of_bytes} bytes is past the oracle's \
                     bound of {MAX_MEASURED_AREA} (the crate would walk it page by page)"
                ));
            }
        }
    }
    Ok(())
}

fn snp_one(path: &str) -> String {
    let (mut out, data) = match open(path) {
        Ok(opened) => opened,
        Err(answer) => return answer,
    };
    let result = panic::catch_unwind(|| -> Result<(u32, [u8; 48]), String> {
        let file = IgvmFile::new_from_binary(&data, None).map_err(|e| format!("parse: {e}"))?;
        let mask = file
            .platforms()
            .iter()
            .find_map(|p| match p {
                IgvmPlatformHeader::SupportedPlatform(sp)
                    if sp.platform_type == IgvmPlatformType::SEV_SNP =>
                {
                    Some(sp.compatibility_mask)
                }
                _ => None,
            })
            .ok_or_else(|| "no SEV-SNP platform header".to_string())?;
        check_measurable(&file)?;
        let digest = igvm::measurement::generate_snp_measurement(
            file.initializations(),
            file.directives(),
            mask,
        )
        .map_err(|e| format!("measurement: {e} ({e:?})"))?;
        Ok((mask, digest))
    });
    match result {
        Ok(Ok((mask, digest))) => {
            let _ = write!(out, ",\"mask\":{mask},\"digest\":\"{}\"", hex(&digest));
        }
        Ok(Err(e)) => {
            out.push_str(",\"error\":");
            json_str(&mut out, &e);
        }
        Err(payload) => {
            out.push_str(",\"panic\":");
            json_str(&mut out, &panic_message(payload));
        }
    }
    out.push('}');
    out
}

fn for_each_file(args: &[String], each: fn(&str) -> String) -> Result<(), String> {
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut emit = |line: String| -> Result<(), String> {
        writeln!(w, "{line}").and_then(|_| w.flush()).map_err(|e| e.to_string())
    };
    if args.len() == 1 && args[0] == "-" {
        for line in std::io::stdin().lock().lines() {
            let name = line.map_err(|e| e.to_string())?;
            if !name.is_empty() {
                emit(each(&name))?;
            }
        }
    } else {
        for name in args {
            emit(each(name))?;
        }
    }
    Ok(())
}

const USAGE: &str =
    "usage: igvm-oracle version | parse FILE...|- | snp-digest FILE...|- | corim ACTION ...|-";

fn main() -> ExitCode {
    // panics are reported in the JSON of the file that caused them
    panic::set_hook(Box::new(|_| {}));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("version") => {
            println!(
                "{{\"oracle\":\"{}\",\"crate\":\"igvm\",\"features\":[\"igvm-c\",\"corim\"],\
                 \"subcommands\":[\"parse\",\"snp-digest\",\"corim\"]}}",
                env!("CARGO_PKG_VERSION")
            );
            Ok(())
        }
        Some("parse") if args.len() > 1 => for_each_file(&args[1..], parse_one),
        Some("snp-digest") if args.len() > 1 => for_each_file(&args[1..], snp_one),
        Some("corim") => corim::main(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("igvm-oracle: {e}");
            ExitCode::from(2)
        }
    }
}
