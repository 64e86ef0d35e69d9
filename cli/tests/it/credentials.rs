//! The S3 credential chain (issue 17), each provider proven by a listing the store accepts
//! only with the keys that provider handed out: instance metadata (IMDSv2), container
//! credentials, web identity at STS, a profile's `credential_process` in `~/.aws/config`;
//! keys that expire during a job are refreshed; with nothing configured the error says what
//! was tried.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::Duration;

use haul_origin::Origin;

use crate::support::credentials::{CONTAINER_TOKEN, CredentialServer, WEB_TOKEN};
use crate::support::s3::S3Server;
use crate::support::{TestDir, guard};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `haul` against `server` with no credentials of its own: no AWS keys, a `HOME` without
/// `~/.aws`, instance metadata off (a test that wants it points it somewhere).
fn bare_haul(server: &S3Server, home: &Path) -> Command {
    let mut command = Command::new(crate::HAUL);
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    command
        .env("HOME", home)
        .env("AWS_ENDPOINT_URL", server.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command
}

/// Lists `bucket` (holding one 3-byte key `k/a`) and checks the listing.
fn assert_lists(command: &mut Command, server: &S3Server, bucket: &str) {
    assert_lists_with(command, server, bucket, &[]);
}

/// [`assert_lists`] with `flags` after `s3 ls`.
fn assert_lists_with(command: &mut Command, server: &S3Server, bucket: &str, flags: &[&str]) {
    let out: Output = command
        .args(["s3", "ls"])
        .args(flags)
        .arg(format!("s3://{}/k/", server.bucket_name(bucket)))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "           3 k/a\n");
}

/// Lists `bucket` and checks that it fails, saying each of `says`.
fn assert_refused(command: &mut Command, bucket: &str, says: &[&str]) {
    let out = command
        .args(["s3", "ls", &format!("s3://{bucket}/k/")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    for said in says {
        assert!(stderr.contains(said), "{said:?} in {stderr}");
    }
}

fn store_with(bucket: &str) -> S3Server {
    let server = S3Server::start_local(&[bucket]);
    server.seed_file(bucket, "k/a", b"<a>");
    server
}

#[test]
fn instance_metadata_hands_out_the_keys_through_imdsv2() {
    guard(|| {
        let server = store_with("imds");
        let endpoints = CredentialServer::start(server.key_ring(), Duration::from_secs(3600));
        let home = TestDir::new();
        let mut command = bare_haul(&server, home.path());
        command
            .env_remove("AWS_EC2_METADATA_DISABLED")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoints.url());
        assert_lists(&mut command, &server, "imds");
        assert_eq!(endpoints.issued().imds.load(Ordering::SeqCst), 1);
        assert_eq!(endpoints.issued().refused.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn container_credentials_come_with_their_token_or_token_file() {
    guard(|| {
        let server = store_with("ecs");
        let endpoints = CredentialServer::start(server.key_ring(), Duration::from_secs(3600));
        let home = TestDir::new();
        let uri = format!("{}/container", endpoints.url());
        let mut command = bare_haul(&server, home.path());
        command
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_TOKEN);
        assert_lists(&mut command, &server, "ecs");
        // EKS Pod Identity: the token in a file.
        let token_file = home.path().join("token");
        std::fs::write(&token_file, format!("{CONTAINER_TOKEN}\n")).unwrap();
        let mut command = bare_haul(&server, home.path());
        command
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_file);
        assert_lists(&mut command, &server, "ecs");
        assert_eq!(endpoints.issued().container.load(Ordering::SeqCst), 2);
        // A wrong token: the endpoint refuses, and so does haul, naming the provider.
        let mut command = bare_haul(&server, home.path());
        command
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong");
        assert_refused(&mut command, "ecs", &["container credentials", "401"]);
    });
}

#[test]
fn web_identity_is_exchanged_at_sts_for_the_roles_keys() {
    guard(|| {
        let server = store_with("irsa");
        let endpoints = CredentialServer::start(server.key_ring(), Duration::from_secs(3600));
        let home = TestDir::new();
        let token_file = home.path().join("web-token");
        std::fs::write(&token_file, WEB_TOKEN).unwrap();
        let irsa = || {
            let mut command = bare_haul(&server, home.path());
            command
                .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file)
                .env("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/haul")
                .env("AWS_ENDPOINT_URL_STS", endpoints.url());
            command
        };
        assert_lists(&mut irsa(), &server, "irsa");
        assert_eq!(endpoints.issued().sts.load(Ordering::SeqCst), 1);
        // A token STS refuses is an error naming web identity, not a fall-through.
        std::fs::write(&token_file, "not-the-token").unwrap();
        assert_refused(
            &mut irsa(),
            "irsa",
            &["web identity", "bad web identity token"],
        );
    });
}

/// `~/.aws/config`'s `[profile x]`: its `credential_process`, `region` and `endpoint_url`.
#[test]
fn a_config_profile_gives_its_endpoint_region_and_credential_process() {
    guard(|| {
        let server = store_with("cfg");
        let (key, secret) = server.keys();
        let home = TestDir::new();
        std::fs::create_dir_all(home.path().join(".aws")).unwrap();
        let process = format!(
            "echo '{{\"Version\": 1, \"AccessKeyId\": \"{key}\", \"SecretAccessKey\": \"{secret}\"}}'"
        );
        std::fs::write(
            home.path().join(".aws/config"),
            format!(
                "[default]\nregion = us-east-1\n\n[profile batch]\nregion = eu-west-1\n\
                 endpoint_url = {}\ncredential_process = {process}\n",
                server.endpoint()
            ),
        )
        .unwrap();
        let mut command = bare_haul(&server, home.path());
        command
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_REGION");
        assert_lists_with(&mut command, &server, "cfg", &["--profile", "batch"]);
        // AWS_PROFILE names it too.
        let mut command = bare_haul(&server, home.path());
        command
            .env_remove("AWS_ENDPOINT_URL")
            .env("AWS_PROFILE", "batch");
        assert_lists(&mut command, &server, "cfg");
    });
}

#[test]
fn with_nothing_configured_the_error_lists_what_was_tried() {
    guard(|| {
        let server = store_with("none");
        let home = TestDir::new();
        // Instance metadata at a port nothing listens on: refused at once.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let out = bare_haul(&server, home.path())
            .env_remove("AWS_EC2_METADATA_DISABLED")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &dead)
            .args(["s3", "ls", "s3://none/k/"])
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        // A configuration the command cannot run with, as a usage error is.
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        for tried in [
            "no S3 credentials found",
            "environment",
            "web identity",
            "profile default",
            "container credentials",
            "instance metadata at http://127.0.0.1:",
        ] {
            assert!(stderr.contains(tried), "{tried:?} in {stderr}");
        }
    });
}

/// Container keys good for 3 s, in a job that stores objects for about 5 s: the sink's
/// PUTs keep going on keys refreshed before they expire (the store never sees old ones).
#[test]
fn keys_that_expire_during_a_job_are_refreshed_before_and_every_object_lands() {
    guard(|| {
        let server = store_with("fresh");
        let ring = server.key_ring();
        let endpoints = CredentialServer::start(ring.clone(), Duration::from_secs(3));
        assert_stores_for_seconds(&server, "fresh", &endpoints);
        let issued = endpoints.issued().container.load(Ordering::SeqCst);
        assert!(issued >= 2, "refreshed: {issued} sets of keys");
        assert_eq!(ring.expired_refusals(), 0, "refreshed ahead of expiry");
    });
}

/// Keys the store stops taking after 1 s though they say an hour (a revoked session): the
/// call refused with `ExpiredToken` is made once more with fresh keys.
#[test]
fn keys_the_store_calls_expired_are_refreshed_and_the_call_made_again() {
    guard(|| {
        let server = store_with("revoked");
        let ring = server.key_ring();
        let endpoints = CredentialServer::start_revoking(
            ring.clone(),
            Duration::from_secs(3600),
            Duration::from_secs(1),
        );
        assert_stores_for_seconds(&server, "revoked", &endpoints);
        assert!(ring.expired_refusals() >= 1, "the store refused some");
        assert!(endpoints.issued().container.load(Ordering::SeqCst) >= 2);
    });
}

/// `haul get` of 20 objects into `s3://bucket/out` on one worker, 250 ms each, with
/// container credentials from `endpoints`: all of them land.
fn assert_stores_for_seconds(server: &S3Server, bucket: &str, endpoints: &CredentialServer) {
    let origin = Origin::start().unwrap();
    let home = TestDir::new();
    let out = bare_haul(server, home.path())
        .env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{}/container", endpoints.url()),
        )
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_TOKEN)
        .args(["get", "-q", "--workers", "1", "-o"])
        .arg(format!("s3://{bucket}/out"))
        .arg(origin.url("/r/o-{00..19}.bin?size=1000&delay_ms=250"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = crate::haul_for(server)
        .args(["s3", "ls"])
        .arg(format!("s3://{bucket}/out/"))
        .output()
        .unwrap();
    let listing = text(&listed.stdout);
    assert_eq!(
        listing.lines().count(),
        20,
        "{listing}{}",
        text(&listed.stderr)
    );
}

/// `--no-sign-request`: a public bucket read with no credentials anywhere, unsigned; the
/// same store refuses unsigned requests once it is private again.
#[test]
fn a_public_bucket_is_read_with_no_sign_request_and_a_private_one_refuses() {
    guard(|| {
        let server = store_with("open");
        server.public_reads(true);
        let home = TestDir::new();
        let mut command = bare_haul(&server, home.path());
        assert_lists_with(&mut command, &server, "open", &["--no-sign-request"]);
        server.seed_file("open", "k/b", b"<bb>");
        let out_dir = TestDir::new();
        let out = bare_haul(&server, home.path())
            .args(["s3", "get", "-q", "--no-sign-request", "-o"])
            .arg(out_dir.path())
            .arg("s3://open/k/")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(std::fs::read(out_dir.path().join("a")).unwrap(), b"<a>");
        assert_eq!(std::fs::read(out_dir.path().join("b")).unwrap(), b"<bb>");
        server.public_reads(false);
        let out = bare_haul(&server, home.path())
            .args(["s3", "ls", "--no-sign-request", "s3://open/k/"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains("403"), "{}", text(&out.stderr));
    });
}

/// A store behind a private CA (a self-signed certificate): refused by default with an error
/// naming the host and why; trusted through `--ca-bundle`, `AWS_CA_BUNDLE` or
/// `SSL_CERT_FILE`, for listings (the bucket's client) and downloads (the downloader's).
#[test]
fn a_private_ca_is_trusted_through_ca_bundle_aws_ca_bundle_or_ssl_cert_file() {
    guard(|| {
        let server = S3Server::start_tls(&["tls"]);
        server.seed_file("tls", "k/a", b"<a>");
        let dir = TestDir::new();
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, server.certificate_pem().unwrap()).unwrap();
        fn ls(command: &mut Command) -> &mut Command {
            command
                .env_remove("SSL_CERT_FILE")
                .env_remove("AWS_CA_BUNDLE")
                .args(["s3", "ls", "s3://tls/k/"])
        }
        let out = ls(&mut crate::haul_for(&server)).output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("127.0.0.1") && stderr.contains("UnknownIssuer"),
            "{stderr}"
        );
        let mut command = crate::haul_for(&server);
        ls(&mut command).arg("--ca-bundle").arg(&pem);
        let out = command.output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "           3 k/a\n");
        for var in ["AWS_CA_BUNDLE", "SSL_CERT_FILE"] {
            let mut command = crate::haul_for(&server);
            ls(&mut command).env(var, &pem);
            let out = command.output().unwrap();
            assert!(out.status.success(), "{var}: {}", text(&out.stderr));
        }
        let out_dir = TestDir::new();
        let out = crate::haul_for(&server)
            .args(["s3", "get", "-q", "--ca-bundle"])
            .arg(&pem)
            .arg("-o")
            .arg(out_dir.path())
            .arg("s3://tls/k/")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(std::fs::read(out_dir.path().join("a")).unwrap(), b"<a>");
        // A bundle that is not there is a usage error naming it.
        let out = crate::haul_for(&server)
            .args([
                "s3",
                "ls",
                "--ca-bundle",
                "/nonexistent/ca.pem",
                "s3://tls/k/",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out.stderr).contains("/nonexistent/ca.pem"));
    });
}
