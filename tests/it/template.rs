//! Range templates: oracle expansions and the exact error text users see.

use haul::{Template, TemplateError};

#[track_caller]
fn check(template: &str, expected: &[&str]) {
    let t = Template::parse(template).unwrap_or_else(|e| panic!("{template}: {e}"));
    assert_eq!(t.len(), expected.len() as u64, "len of {template}");
    let names: Vec<String> = t.iter().collect();
    assert_eq!(names, expected, "expansion of {template}");
    for (i, name) in expected.iter().enumerate() {
        assert_eq!(
            t.get(i as u64).as_deref(),
            Some(*name),
            "get({i}) of {template}"
        );
    }
    assert_eq!(t.get(expected.len() as u64), None);
    assert_eq!(t.iter().len(), expected.len());
}

#[track_caller]
fn check_err(template: &str, message: &str) {
    match Template::parse(template) {
        Ok(t) => panic!("{template} parsed to {} names", t.len()),
        Err(e) => assert_eq!(e.to_string(), message, "error for {template}"),
    }
}

#[test]
fn plain_ranges() {
    check("a{1..3}", &["a1", "a2", "a3"]);
    check("{0..0}", &["0"]);
    check("x{8..11}y", &["x8y", "x9y", "x10y", "x11y"]);
}

#[test]
fn steps() {
    check("{1..10..3}", &["1", "4", "7", "10"]);
    check("{0..9..4}", &["0", "4", "8"]);
    check("{5..5..7}", &["5"]);
}

#[test]
fn zero_padding_is_kept_and_the_shorter_width_wins() {
    check(
        "s-{0000..0003}.tar",
        &["s-0000.tar", "s-0001.tar", "s-0002.tar", "s-0003.tar"],
    );
    check("{08..11}", &["08", "09", "10", "11"]);
    // Bounds of different widths: the shorter width wins, as in AIStore.
    check("{001..10..4}", &["01", "05", "09"]);
    check("{1..010..4}", &["1", "5", "9"]);
    // A value wider than the width is printed whole.
    check("{98..100}", &["98", "99", "100"]);
}

#[test]
fn lists() {
    check("{a,b,c}.bin", &["a.bin", "b.bin", "c.bin"]);
    check("{x,y}{1..2}", &["x1", "x2", "y1", "y2"]);
    // A comma makes a list, even with dots in an item.
    check("{a,..,1..2}", &["a", "..", "1..2"]);
}

#[test]
fn cartesian_product_last_group_fastest() {
    check(
        "d{1..2}/{a,b}-{0..1}",
        &[
            "d1/a-0", "d1/a-1", "d1/b-0", "d1/b-1", "d2/a-0", "d2/a-1", "d2/b-0", "d2/b-1",
        ],
    );
}

#[test]
fn literal_templates_expand_to_themselves() {
    check("https://host/one.tar", &["https://host/one.tar"]);
    check("", &[""]);
}

#[test]
fn a_url_template() {
    let t = Template::parse("https://host/shard-{0000..0999}.tar").unwrap();
    assert_eq!(t.len(), 1000);
    assert_eq!(t.get(0).unwrap(), "https://host/shard-0000.tar");
    assert_eq!(t.get(999).unwrap(), "https://host/shard-0999.tar");
    assert_eq!(t.iter().last().unwrap(), "https://host/shard-0999.tar");
    assert_eq!(t.as_str(), "https://host/shard-{0000..0999}.tar");
}

#[test]
fn expansion_is_lazy_at_the_cap() {
    // Ten million names: parsing and taking a few must not materialise them.
    let t = Template::parse("o-{0..9999999}").unwrap();
    assert_eq!(t.len(), 10_000_000);
    let mut names = t.iter();
    assert_eq!(names.len(), 10_000_000);
    assert_eq!(names.next().unwrap(), "o-0");
    assert_eq!(names.nth(9).unwrap(), "o-10");
    assert_eq!(names.position(), 11);
    assert_eq!(t.get(9_999_999).unwrap(), "o-9999999");
}

#[test]
fn errors_say_what_and_where() {
    check_err("a{1..3", "unbalanced '{' at column 2");
    check_err("a1..3}", "unbalanced '}' at column 6");
    check_err(
        "a{1{2..3}}",
        "nested '{' at column 4: groups cannot be nested",
    );
    check_err("x{}", "empty braces at column 2");
    check_err(
        "x{abc}",
        "malformed group \"{abc}\" at column 2: expected {START..END}, {START..END..STEP} or {a,b,...}",
    );
    check_err(
        "{1..}",
        "malformed group \"{1..}\" at column 1: expected {START..END}, {START..END..STEP} or {a,b,...}",
    );
    check_err(
        "{1..2..3..4}",
        "malformed group \"{1..2..3..4}\" at column 1: expected {START..END}, {START..END..STEP} or {a,b,...}",
    );
    check_err("{a,,b}", "empty item in list \"{a,,b}\" at column 1");
    check_err(
        "x{a,b,a}",
        "item \"a\" twice in list \"{a,b,a}\" at column 2",
    );
    check_err(
        "ab{a..z}",
        "not a number: \"a\" in range \"{a..z}\" at column 3",
    );
    check_err(
        "{1..-3}",
        "not a number: \"-3\" in range \"{1..-3}\" at column 1",
    );
    check_err(
        "{ 1..3}",
        "not a number: \" 1\" in range \"{ 1..3}\" at column 1",
    );
    check_err(
        "{5..1}",
        "range \"{5..1}\" at column 1 runs backwards: 5 > 1",
    );
    check_err(
        "{1..5..0}",
        "range \"{1..5..0}\" at column 1 has a step of 0",
    );
    check_err(
        "{0..99999999999999999999}",
        "number too large: \"99999999999999999999\" in range \"{0..99999999999999999999}\" at column 1",
    );
    check_err(
        "{0..9999999999}",
        "template expands to more than 10000000 names (the limit)",
    );
    check_err(
        "{0..4294967295}{0..4294967295}{0..4294967295}",
        "template expands to more than 10000000 names (the limit)",
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    check_err("é{1..", "unbalanced '{' at column 2");
}

#[test]
fn the_cap_is_configurable() {
    assert_eq!(Template::parse_with_limit("{1..10}", 10).unwrap().len(), 10);
    assert_eq!(
        Template::parse_with_limit("{1..11}", 10),
        Err(TemplateError::TooManyNames { limit: 10 })
    );
}
