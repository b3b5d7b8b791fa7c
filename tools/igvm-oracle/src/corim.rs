// SPDX-License-Identifier: GPL-2.0-or-later
//
// `igvm-oracle corim ...`: what the igvm crate 0.5 (corim feature) says about
// the Launch Measurement CoRIM (profile tag:microsoft.com,2026:launch-
// measurement/v1) and the IGVM headers that carry it (0x104 document, 0x105
// COSE_Sign1 signature).  One JSON line per answer.
//
//   corim build FILE PLATFORM SVN...
//       the crate's own CoRIM for FILE's launch digest: IgvmSerializer::new
//       (which measures the file), LaunchMeasurement::for_platform, set_
//       measurement(Launch), endorse(SVN).with(Launch).finish(), add_corim.
//       The crate's public API builds a CoRIM only from a file's digest
//       (its builder for a given digest is crate-private), so the digest is
//       the crate's measurement of FILE, reported beside the document.
//   corim check DOCUMENT [--signature SIG] [--evidence PLATFORM:HEX]
//       the verdict of the CoRIM library the igvm crate builds its documents
//       with (the `corim` crate, at the version igvm 0.5 resolves to in our
//       Cargo.lock; igvm itself does not validate a payload: lib.rs "TODO:
//       validate CoRIM document"): validate::decode_and_validate_full_at and
//       the fields it decoded; with SIG, types::signed::decode_signed_corim,
//       its protected header, the COSE Sig_structure it builds for the
//       detached document (to_be_signed_detached: the bytes a verifier checks
//       the signature over; the crate has no cryptography of its own) and
//       validate_signed_corim_payload_detached; with an evidence digest, the
//       appraisal (validate::match_reference_values, apply_endorsement_series:
//       draft-ietf-rats-corim-10 section 9.3).
//   corim embed IN OUT PLATFORM SVN [--signature SIG]
//       the crate's serializer: IN parsed, add_corim(PLATFORM, ..SVN..),
//       with SIG set_corim_signature(PLATFORM, SIG's bytes), serialize to OUT.
//   corim read FILE...
//       IgvmFile::new_from_binary (no isolation filter) and the CoRIM headers
//       the crate read from the file: kind, compatibility mask, data.
//
// Every action takes `-` instead of its arguments: one request per stdin
// line, arguments separated by tabs, so one process answers for many.
// PLATFORM is the harness's name: sev-snp, tdx or vsm.

use std::io::{BufRead, Write};
use std::panic;
use std::time::{SystemTime, UNIX_EPOCH};

use corim::types::common::MeasuredElement;
use corim::types::environment::EnvironmentMap;
use corim::types::measurement::{Digest, MeasurementMap, MeasurementValuesMap, SvnChoice};
use corim::validate::{self, EvidenceClaim, ValidatedCorim};
use igvm::corim::launch_measurement::{measurement_info, LaunchMeasurement, MeasurementKind};
use igvm::{IgvmFile, IgvmInitializationHeader, IgvmSerializer};
use igvm_defs::IgvmPlatformType;

use crate::json::J;
use crate::{check_measurable, panic_message, read_file, variant};

/// The platforms of the profile, in the harness's names, with the class-map
/// the profile registers for each (igvm 0.5 launch_measurement/profile.rs,
/// module documentation: "Registered vendor/model pairs").  Used only for the
/// evidence's environment: the documents' own come from the crate.
const PLATFORMS: [(&str, IgvmPlatformType, &str, &str); 3] = [
    ("sev-snp", IgvmPlatformType::SEV_SNP, "AMD", "SEV-SNP"),
    ("tdx", IgvmPlatformType::TDX, "Intel", "TDX"),
    ("vsm", IgvmPlatformType::VSM_ISOLATION, "Microsoft", "VBS"),
];

const USAGE: &str = "usage: igvm-oracle corim build FILE PLATFORM SVN... | \
                     check DOCUMENT [--signature SIG] [--evidence PLATFORM:HEX] | \
                     embed IN OUT PLATFORM SVN [--signature SIG] | read FILE... \
                     (or `-`: requests on stdin, one a line, arguments tab-separated)";

type Answer = Result<J, String>;

fn platform(name: &str) -> Result<(IgvmPlatformType, &'static str, &'static str), String> {
    PLATFORMS
        .iter()
        .find(|p| p.0 == name)
        .map(|p| (p.1, p.2, p.3))
        .ok_or_else(|| format!("unknown platform {name:?} (sev-snp, tdx, vsm)"))
}

fn svn(text: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .map_err(|_| format!("SVN {text:?} is not an unsigned 64-bit integer"))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn parse_file(path: &str) -> Result<IgvmFile, String> {
    let data = read_file(path)?;
    IgvmFile::new_from_binary(&data, None).map_err(|e| format!("parse: {e} ({e:?})"))
}

/// The crate's launch CoRIM of one SVN for a serializer's file.
fn crate_corim(ser: &mut IgvmSerializer<'_>, p: IgvmPlatformType, svn: u64) -> Result<Vec<u8>, String> {
    let mut le = LaunchMeasurement::for_platform(p).map_err(|e| e.to_string())?;
    le.set_measurement(MeasurementKind::Launch).map_err(|e| e.to_string())?;
    le.endorse(svn)
        .with(MeasurementKind::Launch)
        .and_then(|b| b.finish())
        .map_err(|e| e.to_string())?;
    ser.add_corim(p, le.build())
        .map(<[u8]>::to_vec)
        .map_err(|e| format!("add_corim: {e}"))
}

fn measurement_of(ser: &IgvmSerializer<'_>, p: IgvmPlatformType) -> Result<(u32, Vec<u8>), String> {
    ser.measurement_for(p)
        .map(|m| (m.compatibility_mask, m.digest.clone()))
        .ok_or_else(|| format!("the file has no {p:?} platform header"))
}

fn build(args: &[String]) -> Vec<Answer> {
    // One answer per SVN, failures included, so that a batch stays in step.
    let [file, plat, svns @ ..] = args else {
        return vec![Err(USAGE.into())];
    };
    if svns.is_empty() {
        return vec![Err(USAGE.into())];
    }
    let each = |e: String| svns.iter().map(|_| Err(e.clone())).collect::<Vec<_>>();
    let prepared = (|| {
        let (p, _, _) = platform(plat)?;
        let parsed = parse_file(file)?;
        check_measurable(&parsed)?;
        let svns = svns.iter().map(|s| svn(s)).collect::<Result<Vec<_>, _>>()?;
        Ok::<_, String>((p, parsed, svns))
    })();
    let (p, parsed, svns) = match prepared {
        Ok(x) => x,
        Err(e) => return each(e),
    };
    let mut ser = match IgvmSerializer::new(&parsed) {
        Ok(s) => s,
        Err(e) => return each(format!("IgvmSerializer::new: {e}")),
    };
    svns.into_iter()
        .map(|n| {
            let document = crate_corim(&mut ser, p, n)?;
            let (mask, digest) = measurement_of(&ser, p)?;
            Ok(J::Obj(vec![
                ("file", J::str(file)),
                ("platform", J::str(plat)),
                ("mask", J::Int(mask.into())),
                ("digest", J::hex(&digest)),
                ("svn", J::Int(n.into())),
                ("corim", J::hex(&document)),
            ]))
        })
        .collect()
}

fn flag<'a>(args: &'a [String], name: &str) -> Result<Option<&'a str>, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .map(|v| Some(v.as_str()))
            .ok_or_else(|| format!("{name} needs a value")),
    }
}

/// Positional arguments: those not part of a `--flag value` pair.
fn positional(args: &[String]) -> Vec<&String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
        } else if a.starts_with("--") {
            skip = true;
        } else {
            out.push(a);
        }
    }
    out
}

fn error_json(debug: String, message: String) -> J {
    let (name, inner) = variant(&debug);
    J::Obj(vec![
        ("ok", J::Bool(false)),
        ("error", J::Str(name)),
        ("inner", J::opt_str(inner)),
        ("message", J::Str(message)),
    ])
}

fn measured_element(m: &Option<MeasuredElement>) -> J {
    match m {
        None => J::Null,
        Some(MeasuredElement::Text(t)) => J::str(t.as_str()),
        Some(other) => J::str(format!("{other} (not text)")),
    }
}

fn svn_json(s: &SvnChoice) -> J {
    match s {
        SvnChoice::ExactValue(n) => J::Obj(vec![("exact", J::Int((*n).into()))]),
        SvnChoice::MinValue(n) => J::Obj(vec![("min", J::Int((*n).into()))]),
        other => J::str(format!("{other:?}")),
    }
}

fn measurement_json(m: &MeasurementMap) -> J {
    let digests = m.mval.digests.as_ref().map_or(J::Null, |ds| {
        J::Arr(
            ds.iter()
                .map(|d| {
                    let alg = d.alg().as_int().map_or_else(|| J::str(d.alg().to_string()), |n| J::Int(n.into()));
                    J::Arr(vec![alg, J::hex(d.value())])
                })
                .collect(),
        )
    });
    J::Obj(vec![
        ("mkey", measured_element(&m.mkey)),
        ("digests", digests),
        ("svn", m.mval.svn.as_ref().map_or(J::Null, svn_json)),
    ])
}

fn environment_json(e: &EnvironmentMap) -> J {
    let class = e.class.as_ref();
    J::Obj(vec![
        ("vendor", J::opt_str(class.and_then(|c| c.vendor.clone()))),
        ("model", J::opt_str(class.and_then(|c| c.model.clone()))),
        ("class_id", J::Bool(class.is_some_and(|c| c.class_id.is_some()))),
        ("instance", J::Bool(e.instance.is_some())),
        ("group", J::Bool(e.group.is_some())),
    ])
}

/// What the corim crate decoded: enough to compare field by field with ours.
fn validated_json(v: &ValidatedCorim) -> J {
    let comids = v
        .comids
        .iter()
        .map(|c| {
            let t = &c.triples;
            let reference = t.reference_triples.as_deref().unwrap_or(&[]);
            let ces = t.conditional_endorsement_series.as_deref().unwrap_or(&[]);
            J::Obj(vec![
                ("tag_id", J::str(c.tag_identity.tag_id.to_string())),
                ("reference", J::Arr(reference.iter().map(|r| J::Obj(vec![
                    ("environment", environment_json(r.environment())),
                    ("measurements", J::Arr(r.measurements().iter().map(measurement_json).collect())),
                ])).collect())),
                ("ces", J::Arr(ces.iter().map(|x| J::Obj(vec![
                    ("environment", environment_json(&x.condition().environment)),
                    ("claims", J::Int(x.condition().claims_list.len() as i128)),
                    ("series", J::Arr(x.series().iter().map(|s| J::Obj(vec![
                        ("selection", J::Arr(s.selection().iter().map(measurement_json).collect())),
                        ("addition", J::Arr(s.addition().iter().map(measurement_json).collect())),
                    ])).collect())),
                ])).collect())),
            ])
        })
        .collect();
    J::Obj(vec![
        ("ok", J::Bool(true)),
        ("id", J::str(v.corim.id.to_string())),
        ("profile", J::opt_str(v.corim.profile.as_ref().map(|p| p.to_string()))),
        ("tags", J::Int(v.corim.tags.len() as i128)),
        ("comids", J::Arr(comids)),
        ("cotls", J::Int(v.cotls.len() as i128)),
        ("coswids", J::Int((v.coswids.len() + v.coswid_opaque_count) as i128)),
    ])
}

/// The relying party's appraisal of one evidence digest against a document.
fn appraise(v: &ValidatedCorim, spec: &str) -> Answer {
    let (plat, digest_hex) = spec
        .split_once(':')
        .ok_or_else(|| format!("--evidence {spec:?}: want PLATFORM:HEX"))?;
    let (p, vendor, model) = platform(plat)?;
    let digest = (0..digest_hex.len())
        .step_by(2)
        .map(|i| digest_hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| format!("--evidence: {digest_hex:?} is not hex"))?;
    let (mkey, alg, _) =
        measurement_info(p, MeasurementKind::Launch).ok_or("no launch measurement for the platform")?;
    let evidence = [EvidenceClaim {
        environment: EnvironmentMap::for_class(vendor, model),
        measurements: vec![MeasurementMap {
            mkey: Some(MeasuredElement::Text(mkey.into())),
            mval: MeasurementValuesMap {
                digests: Some(vec![Digest::new(alg, digest)]),
                ..MeasurementValuesMap::default()
            },
            authorized_by: None,
        }],
    }];
    let mut corroborated = 0usize;
    let mut endorsed = Vec::new();
    for c in &v.comids {
        let t = &c.triples;
        corroborated +=
            validate::match_reference_values(t.reference_triples.as_deref().unwrap_or(&[]), &evidence).len();
        let claims = validate::apply_endorsement_series(
            t.conditional_endorsement_series.as_deref().unwrap_or(&[]),
            &evidence,
        )
        .map_err(|e| format!("apply_endorsement_series: {e}"))?;
        for claim in claims {
            endorsed.extend(claim.endorsements.iter().map(measurement_json));
        }
    }
    Ok(J::Obj(vec![
        ("platform", J::str(plat)),
        ("mkey", J::str(mkey)),
        ("alg", J::Int(alg.into())),
        ("corroborated", J::Int(corroborated as i128)),
        ("endorsed", J::Arr(endorsed)),
    ]))
}

fn signature_json(sig: &[u8], document: &[u8], now: i64) -> J {
    let s = match corim::types::signed::decode_signed_corim(sig) {
        Ok(s) => s,
        Err(e) => return error_json(format!("{e:?}"), e.to_string()),
    };
    let h = &s.protected;
    let tbs = s.to_be_signed_detached(document, &[]);
    let payload = match corim::types::signed::validate_signed_corim_payload_detached(&s, document, now) {
        Ok(_) => J::Obj(vec![("ok", J::Bool(true))]),
        Err(e) => error_json(format!("{e:?}"), e.to_string()),
    };
    J::Obj(vec![
        ("ok", J::Bool(true)),
        ("detached", J::Bool(s.is_detached())),
        ("alg", J::Int(h.alg.to_i64().into())),
        ("alg_name", J::str(h.alg.name())),
        ("alg_deprecated", J::Bool(h.alg.is_deprecated())),
        ("content_type", J::opt_str(h.content_type.clone())),
        ("issuer", J::opt_str(h.cwt_claims.as_ref().map(|c| c.iss.clone()))),
        ("corim_meta", J::Bool(h.corim_meta.is_some())),
        ("kid", h.kid.as_deref().map_or(J::Null, J::hex)),
        ("signature", J::hex(&s.signature)),
        ("to_be_signed", tbs.map_or_else(|e| J::str(format!("error: {e}")), |b| J::hex(&b))),
        ("payload", payload),
    ])
}

fn check(args: &[String]) -> Vec<Answer> {
    let answer = (|| {
        let pos = positional(args);
        let [doc_path] = pos.as_slice() else {
            return Err(USAGE.to_string());
        };
        let document = read_file(doc_path)?;
        let now = now();
        let validated = validate::decode_and_validate_full_at(&document, now);
        let mut out = match &validated {
            Ok(v) => validated_json(v),
            Err(e) => error_json(format!("{e:?}"), e.to_string()),
        };
        out.push("document", J::str(doc_path.as_str()));
        if let Some(sig_path) = flag(args, "--signature")? {
            let sig = read_file(sig_path)?;
            out.push("signature", signature_json(&sig, &document, now));
        }
        if let Some(spec) = flag(args, "--evidence")? {
            let v = validated.as_ref().map_err(|e| format!("no appraisal of an invalid document: {e}"))?;
            out.push("appraisal", appraise(v, spec)?);
        }
        Ok(out)
    })();
    vec![answer]
}

fn embed(args: &[String]) -> Vec<Answer> {
    let answer = (|| {
        let pos = positional(args);
        let [input, output, plat, n] = pos.as_slice() else {
            return Err(USAGE.to_string());
        };
        let (p, _, _) = platform(plat)?;
        let n = svn(n)?;
        let signature = flag(args, "--signature")?.map(read_file).transpose()?;
        let parsed = parse_file(input)?;
        check_measurable(&parsed)?;
        let mut ser = IgvmSerializer::new(&parsed).map_err(|e| format!("IgvmSerializer::new: {e}"))?;
        let document = crate_corim(&mut ser, p, n)?;
        if let Some(sig) = &signature {
            ser.set_corim_signature(p, sig.clone())
                .map_err(|e| format!("set_corim_signature: {e}"))?;
        }
        let (mask, digest) = measurement_of(&ser, p)?;
        let mut image = Vec::new();
        ser.serialize(&mut image).map_err(|e| format!("serialize: {e}"))?;
        std::fs::write(output.as_str(), &image).map_err(|e| format!("{output}: {e}"))?;
        Ok(J::Obj(vec![
            ("file", J::str(input.as_str())),
            ("out", J::str(output.as_str())),
            ("size", J::Int(image.len() as i128)),
            ("platform", J::str(plat.as_str())),
            ("mask", J::Int(mask.into())),
            ("digest", J::hex(&digest)),
            ("svn", J::Int(n.into())),
            ("corim", J::hex(&document)),
            ("signed", J::Bool(signature.is_some())),
        ]))
    })();
    vec![answer]
}

fn read_one(path: &str) -> Answer {
    let data = read_file(path)?;
    let mut out = J::Obj(vec![("file", J::str(path)), ("size", J::Int(data.len() as i128))]);
    match IgvmFile::new_from_binary(&data, None) {
        Err(e) => {
            let mut verdict = error_json(format!("{e:?}"), e.to_string());
            verdict.push("headers", J::Arr(Vec::new()));
            out.push("any", verdict);
        }
        Ok(f) => {
            let headers = f
                .initializations()
                .iter()
                .filter_map(|h| match h {
                    IgvmInitializationHeader::CorimDocument { compatibility_mask, document } => {
                        Some(("document", *compatibility_mask, document))
                    }
                    IgvmInitializationHeader::CorimSignature { compatibility_mask, signature } => {
                        Some(("signature", *compatibility_mask, signature))
                    }
                    _ => None,
                })
                .map(|(kind, mask, data)| {
                    J::Obj(vec![("kind", J::str(kind)), ("mask", J::Int(mask.into())), ("data", J::hex(data))])
                })
                .collect();
            out.push("any", J::Obj(vec![("ok", J::Bool(true)), ("headers", J::Arr(headers))]));
        }
    }
    Ok(out)
}

fn read(args: &[String]) -> Vec<Answer> {
    if args.is_empty() {
        return vec![Err(USAGE.into())];
    }
    args.iter().map(|a| read_one(a)).collect()
}

/// One request: its answers, each a JSON line; an error or a panic is an answer too.
fn answer(action: &str, args: &[String]) -> Result<Vec<String>, String> {
    let run: fn(&[String]) -> Vec<Answer> = match action {
        "build" => build,
        "check" => check,
        "embed" => embed,
        "read" => read,
        _ => return Err(USAGE.into()),
    };
    // a panic answers for every answer the request expected, so a batch stays in step
    let expected = match action {
        "build" => args.len().saturating_sub(2).max(1),
        "read" => args.len().max(1),
        _ => 1,
    };
    let answers = panic::catch_unwind(|| run(args)).unwrap_or_else(|p| {
        let message = panic_message(p);
        (0..expected)
            .map(|_| Ok(J::Obj(vec![("ok", J::Bool(false)), ("panic", J::str(message.as_str()))])))
            .collect()
    });
    Ok(answers
        .into_iter()
        .map(|a| match a {
            Ok(j) => j.line(),
            Err(e) => J::Obj(vec![("request", J::Arr(args.iter().map(|a| J::str(a.as_str())).collect())),
                                  ("error", J::Str(e))])
                .line(),
        })
        .collect())
}

pub fn main(args: &[String]) -> Result<(), String> {
    let Some((action, rest)) = args.split_first() else {
        return Err(USAGE.into());
    };
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut emit = |lines: Vec<String>| -> Result<(), String> {
        for line in lines {
            writeln!(w, "{line}").map_err(|e| e.to_string())?;
        }
        w.flush().map_err(|e| e.to_string())
    };
    if rest.len() == 1 && rest[0] == "-" {
        for line in std::io::stdin().lock().lines() {
            let line = line.map_err(|e| e.to_string())?;
            if line.is_empty() {
                continue;
            }
            let request: Vec<String> = line.split('\t').map(str::to_string).collect();
            emit(answer(action, &request)?)?;
        }
        Ok(())
    } else {
        emit(answer(action, rest)?)
    }
}
