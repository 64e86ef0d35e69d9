//! `--json` on every command that has a result, checked against its schema in docs/json.md:
//! each object has exactly the fields the page lists, and the values say what they should.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;

use haul_origin::Origin;
use serde_json::Value;

use crate::support::s3::S3Server;
use crate::support::{TestDir, guard};

const SCHEMA: &str = include_str!("../../../docs/json.md");

/// Each object of the schema page (`### NAME`) and its fields (the first column of the
/// table under it).
fn schema() -> BTreeMap<String, BTreeSet<String>> {
    let mut objects = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in SCHEMA.lines() {
        if let Some(name) = line.strip_prefix("### ") {
            current = Some(name.trim().to_owned());
            objects.insert(name.trim().to_owned(), BTreeSet::new());
        } else if let (Some(name), Some(row)) = (&current, line.strip_prefix("| `")) {
            let field = row.split('`').next().unwrap();
            objects.get_mut(name).unwrap().insert(field.to_owned());
        }
    }
    objects
}

#[track_caller]
fn assert_fields(kind: &str, value: &Value) {
    let documented = &schema()[kind];
    let fields: BTreeSet<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("{kind}: not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    assert_eq!(&fields, documented, "{kind}: {value}");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The JSON object on the last line of `bytes`.
#[track_caller]
fn last_json(bytes: &[u8]) -> Value {
    let text = text(bytes);
    let line = text.lines().last().unwrap_or_else(|| panic!("no output"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn failure_of<'a>(failures: &'a Value, name: &str) -> &'a Value {
    failures
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no failure named {name}: {failures}"))
}

#[test]
fn every_json_output_has_exactly_the_documented_fields() {
    guard(|| {
        assert_eq!(
            schema().keys().collect::<Vec<_>>(),
            // verify and mismatch: `verify_prints_the_documented_fields`.
            [
                "failure",
                "in_flight",
                "job",
                "listed",
                "mismatch",
                "run",
                "stream",
                "verify"
            ]
        );
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let haul = |args: &[&str]| -> Output {
            std::process::Command::new(crate::HAUL)
                .args(args)
                .output()
                .unwrap()
        };
        let out_dir = dir.path().join("out");
        let missing = origin.url("/j/missing.bin?status=404&X-Amz-Signature=secret");

        // A run: its final status, with a job's failure. --json-progress lines too, one of
        // them (the gate holds a body) with an object in flight.
        let run = haul(&[
            "get",
            "--json",
            "-o",
            out_dir.to_str().unwrap(),
            &origin.url("/j/{a,b}.bin?size=1000"),
            &missing,
        ]);
        assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
        let status: Value = serde_json::from_slice(&run.stdout).expect("one JSON object");
        assert_fields("run", &status);
        assert_eq!(
            (status["landed"].as_u64(), status["bytes_landed"].as_u64()),
            (Some(2), Some(2000))
        );
        for job in status["jobs"].as_array().unwrap() {
            assert_fields("job", job);
        }
        let failure = failure_of(&status["jobs"][1]["failures"], "missing.bin");
        assert_fields("failure", failure);
        assert_eq!(failure["status"], 404);
        assert_eq!(failure["reason"], "HTTP status 404");
        let url = failure["url"].as_str().unwrap();
        assert!(
            url.contains("X-Amz-Signature=REDACTED") && !url.contains("secret"),
            "{url}"
        );

        let held = origin.url("/j/held.bin?size=200000&gate_after=1000");
        let mut child = std::process::Command::new(crate::HAUL)
            .args([
                "get",
                "--json-progress",
                "-o",
                out_dir.to_str().unwrap(),
                &held,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines =
            std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        assert!(
            origin
                .gate()
                .wait_arrivals(1, std::time::Duration::from_secs(30))
        );
        let in_flight = loop {
            let line: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
            assert_fields("run", &line);
            let tasks = &line["jobs"][0]["in_flight"];
            if tasks.as_array().is_some_and(|t| !t.is_empty()) {
                break tasks[0].clone();
            }
        };
        origin.gate().release();
        assert_fields("in_flight", &in_flight);
        assert_eq!(
            (
                in_flight["name"].as_str(),
                in_flight["bytes_total"].as_u64()
            ),
            (Some("held.bin"), Some(200000))
        );
        let rest: Vec<String> = lines.map(Result::unwrap).collect();
        assert!(child.wait().unwrap().success());
        let last: Value = serde_json::from_str(rest.last().unwrap()).unwrap();
        assert_eq!(last["done"], true);

        // Objects to stdout: the status on stderr, after the failure's text line.
        let streamed = haul(&[
            "get",
            "--stdout",
            "--json",
            &origin.url("/j/a.bin?size=1000"),
            &missing,
        ]);
        assert_eq!(streamed.status.code(), Some(1));
        assert_eq!(streamed.stdout.len(), 1000, "stdout is the data alone");
        let stream = last_json(&streamed.stderr);
        assert_fields("stream", &stream);
        assert_eq!(
            (stream["landed"].as_u64(), stream["failed"].as_u64()),
            (Some(1), Some(1))
        );
        let failure = failure_of(&stream["failures"], "missing.bin");
        assert_fields("failure", failure);
        assert_eq!(failure["status"], 404);

        // S3: a listing, line by line, and cat.
        let server = S3Server::start(&["jsonls"]);
        server.seed_file("jsonls", "k/a", b"aaa");
        server.seed_file("jsonls", "k/b", b"bbbbb");
        let bucket = server.bucket_name("jsonls");
        let s3 = |args: &[&str]| crate::haul_for(&server).args(args).output().unwrap();
        let listed = s3(&["s3", "ls", "--json", &format!("s3://{bucket}/k/")]);
        assert!(listed.status.success(), "{}", text(&listed.stderr));
        let keys: Vec<Value> = text(&listed.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(keys.len(), 2);
        for key in &keys {
            assert_fields("listed", key);
        }
        assert_eq!(
            (keys[1]["key"].as_str(), keys[1]["size"].as_u64()),
            (Some("k/b"), Some(5))
        );
        let modified = keys[0]["last_modified"].as_str().unwrap();
        assert!(
            modified.len() >= 20 && modified.ends_with('Z') && modified.as_bytes()[10] == b'T',
            "{modified}"
        );

        let cat = s3(&[
            "s3",
            "cat",
            "--json",
            &format!("s3://{bucket}/k/a"),
            &format!("s3://{bucket}/k/gone"),
        ]);
        assert_eq!(cat.status.code(), Some(1));
        assert_eq!(cat.stdout, b"aaa");
        let stream = last_json(&cat.stderr);
        assert_fields("stream", &stream);
        let failure = failure_of(&stream["failures"], "k/gone");
        assert_fields("failure", failure);
        assert_eq!(failure["status"], 404);
        assert_eq!(failure["url"], format!("s3://{bucket}/k/gone"));
    });
}

#[test]
fn verify_prints_the_documented_fields() {
    guard(|| {
        let dir = TestDir::new();
        std::fs::write(dir.path().join("a.bin"), b"abc").unwrap();
        std::fs::write(dir.path().join("b.bin"), b"longer").unwrap();
        std::fs::write(dir.path().join("stray"), b"x").unwrap();
        let mut manifest = haul::Manifest::new();
        let digest = haul::Sha256Digest::of(b"abc");
        manifest.push(haul::ManifestEntry::new("a.bin", 3, "https://h/a.bin").sha256(digest));
        manifest.push(haul::ManifestEntry::new("b.bin", 2, "https://h/b.bin"));
        manifest.push(haul::ManifestEntry::new("c.bin", 1, "https://h/c.bin"));
        let file = dir.path().join(".haul-test.manifest");
        std::fs::write(&file, manifest.to_string()).unwrap();
        let out = std::process::Command::new(crate::HAUL)
            .args([
                "--json",
                "verify",
                dir.path().to_str().unwrap(),
                "--manifest",
            ])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let json = last_json(&out.stdout);
        assert_fields("verify", &json);
        assert_eq!(json["clean"], false);
        assert_eq!(
            (json["good"].as_u64(), json["bytes_hashed"].as_u64()),
            (Some(1), Some(3))
        );
        assert_eq!(json["missing"], serde_json::json!(["c.bin"]));
        assert_eq!(json["extra"], serde_json::json!(["stray"]));
        assert_fields("mismatch", &json["mismatched"][0]);
        assert_eq!(json["mismatched"][0]["name"], "b.bin");
    });
}
