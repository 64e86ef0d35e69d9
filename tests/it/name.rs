//! Object names, URL names and mountpaths: nothing escapes a mountpath.

use haul::{Mountpath, NameError, ObjectName, UrlError, check_url, name_from_url};

use crate::support::TestDir;

#[track_caller]
fn refused(name: &str, message: &str) {
    match ObjectName::new(name) {
        Ok(ok) => panic!("{name:?} accepted as {ok}"),
        Err(e) => assert_eq!(e.to_string(), message, "error for {name:?}"),
    }
}

#[test]
fn escaping_and_unusable_names_are_refused() {
    refused("", "object name is empty");
    refused(".", "object name \".\" has a \".\" segment");
    refused("..", "object name \"..\" has a \"..\" segment");
    refused(
        "../etc/passwd",
        "object name \"../etc/passwd\" has a \"..\" segment",
    );
    refused(
        "a/../../b",
        "object name \"a/../../b\" has a \"..\" segment",
    );
    refused("a/..", "object name \"a/..\" has a \"..\" segment");
    refused("a/./b", "object name \"a/./b\" has a \".\" segment");
    refused("a//b", "object name \"a//b\" has a \"\" segment");
    refused("/etc/passwd", "object name \"/etc/passwd\" is absolute");
    refused("dir/", "object name \"dir/\" ends with '/'");
    refused("a\0b", "object name \"a\\0b\" contains '\\0'");
    refused(
        "..\\..\\windows",
        "object name \"..\\\\..\\\\windows\" contains '\\\\'",
    );
    refused("c:\\x", "object name \"c:\\\\x\" contains '\\\\'");
    refused(
        ".haul-work/x",
        "object name \".haul-work/x\" is inside haul's work directory",
    );
}

#[test]
fn safe_names_land_inside_the_mountpath() {
    let dir = TestDir::new();
    let mp = Mountpath::new(dir.path()).unwrap();
    for name in [
        "a",
        "a.tar",
        "sub/dir/x.bin",
        "..hidden",
        "x..y",
        ".dotfile",
        "spaces ok",
    ] {
        let name = ObjectName::new(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let path = mp.path_of(&name);
        assert!(path.starts_with(dir.path()), "{} escapes", path.display());
        assert_eq!(
            path.strip_prefix(dir.path()).unwrap().to_str().unwrap(),
            name.as_str()
        );
    }
    assert!(mp.work_dir().is_dir());
}

#[test]
fn subdirectories_are_validated_too() {
    let name = ObjectName::new("x.bin").unwrap();
    assert_eq!(name.under("job/a").unwrap().as_str(), "job/a/x.bin");
    assert_eq!(name.under("").unwrap().as_str(), "x.bin");
    assert!(matches!(
        name.under("../up"),
        Err(NameError::BadSegment { .. })
    ));
    assert!(matches!(name.under("/abs"), Err(NameError::Absolute(_))));
}

#[test]
fn names_from_urls() {
    let ok = |u: &str| {
        name_from_url(u)
            .unwrap_or_else(|e| panic!("{u}: {e}"))
            .to_string()
    };
    assert_eq!(ok("http://h/a/b/shard-01.tar"), "shard-01.tar");
    assert_eq!(ok("https://h:8080/x.bin?sig=1&a=b#frag"), "x.bin");
    assert_eq!(ok("HTTP://h/%E2%9C%93%20ok.bin"), "✓ ok.bin");
    assert_eq!(ok("http://[::1]:80/v6.bin"), "v6.bin");
}

#[track_caller]
fn url_refused(u: &str, message: &str) {
    let err = name_from_url(u).expect_err(u);
    assert_eq!(crate::support::chain(&err), message, "error for {u}");
}

#[test]
fn bad_urls_get_clear_errors() {
    url_refused(
        "ftp://h/x",
        "unsupported URL \"ftp://h/x\": the scheme must be http or https",
    );
    url_refused(
        "h/x.bin",
        "unsupported URL \"h/x.bin\": the scheme must be http or https",
    );
    url_refused(
        "http:///x.bin",
        "malformed URL \"http:///x.bin\": it has no host",
    );
    url_refused(
        "http://h:99999/x",
        "malformed URL \"http://h:99999/x\": its port is not a number from 0 to 65535",
    );
    url_refused(
        "http://h/a b",
        "malformed URL \"http://h/a b\": it contains white space or control characters",
    );
    url_refused(
        "http://h/dir/",
        "URL \"http://h/dir/\" names no file (its path ends in '/'): give the object a name",
    );
    url_refused(
        "http://h",
        "URL \"http://h\" names no file (its path ends in '/'): give the object a name",
    );
    url_refused(
        "http://h/%2e%2e",
        "URL \"http://h/%2e%2e\" gives no usable object name: object name \"..\" has a \"..\" segment",
    );
    url_refused(
        "http://h/a%2F..%2Fb",
        "URL \"http://h/a%2F..%2Fb\" gives no usable object name: object name \"a/../b\" contains '/'",
    );
    url_refused(
        "http://h/a%5Cb",
        "URL \"http://h/a%5Cb\" gives no usable object name: object name \"a\\\\b\" contains '\\\\'",
    );
    url_refused(
        "http://h/%zz",
        "malformed URL \"http://h/%zz\": its last path segment has a bad %-escape or is not UTF-8",
    );
    url_refused(
        "http://h/%ff",
        "malformed URL \"http://h/%ff\": its last path segment has a bad %-escape or is not UTF-8",
    );
    assert!(matches!(
        check_url("mailto:x"),
        Err(UrlError::Scheme { .. })
    ));
}

#[test]
fn signatures_are_redacted_from_urls_in_errors() {
    let err = name_from_url("http://h/dir/?X-Amz-Signature=secret&X-Amz-Credential=AKIA&n=1")
        .expect_err("no name");
    let text = err.to_string();
    assert!(!text.contains("secret") && !text.contains("AKIA"), "{text}");
    assert!(
        text.contains("X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&n=1"),
        "{text}"
    );
    // A user and password in the URL itself are hidden too.
    let err = name_from_url("https://me:secret8@h/dir/").expect_err("no name");
    let text = err.to_string();
    assert!(!text.contains("secret8") && !text.contains("me:"), "{text}");
    assert!(text.contains("https://REDACTED@h/dir/"), "{text}");
}

#[test]
fn signatures_and_credentials_are_redacted_in_debug_output() {
    let url = "https://b.s3/k.bin?X-Amz-Signature=secret1&X-Amz-Credential=secret2";
    let task = haul::ObjectTask::from_url(url)
        .unwrap()
        .header("Authorization", "Bearer secret3");
    let spec = haul::JobSpec::multi([url])
        .header("Authorization", "Bearer secret4")
        .description("d");
    let single = haul::JobSpec::single(url);
    let config = haul::S3Config::new("http://127.0.0.1:1", "us-east-1")
        .credentials("AKIDsecret5", "secret6")
        .session_token("secret7");
    let shown = format!("{task:?} {spec:?} {single:?} {config:?}");
    for secret in [
        "secret1", "secret2", "secret3", "secret4", "secret5", "secret6", "secret7",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("X-Amz-Signature=REDACTED"), "{shown}");
}
