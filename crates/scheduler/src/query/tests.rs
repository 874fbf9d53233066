//! Unit tests of the query language: evaluation semantics, the ECS
//! documentation's examples, and every error with its position.

use std::collections::BTreeMap;

use super::*;

fn attrs(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect()
}

fn t2_micro() -> BTreeMap<String, Option<String>> {
    attrs(&[
        ("ecs.instance-type", Some("t2.micro")),
        ("ecs.availability-zone", Some("us-east-1a")),
        ("ecs.os-type", Some("linux")),
        ("gpu", None),
        ("mem-gb", Some("16")),
        ("kernel", Some("5.10.2")),
    ])
}

fn check(expr: &str, facts: &InstanceFacts<'_>) -> bool {
    match Query::parse(expr) {
        Ok(q) => q.matches(facts),
        Err(e) => panic!("{expr}: {e}"),
    }
}

fn on_attrs(expr: &str) -> bool {
    let a = t2_micro();
    check(
        expr,
        &InstanceFacts {
            attributes: &a,
            ..InstanceFacts::default()
        },
    )
}

fn err(expr: &str) -> QueryError {
    match Query::parse(expr) {
        Ok(q) => panic!("{expr} parsed: {q:?}"),
        Err(e) => e,
    }
}

#[test]
fn equals_and_not_equals() {
    assert!(on_attrs("attribute:ecs.instance-type == t2.micro"));
    assert!(on_attrs("attribute:ecs.instance-type equals t2.micro"));
    assert!(!on_attrs("attribute:ecs.instance-type == t2.small"));
    assert!(on_attrs("attribute:ecs.instance-type != t2.small"));
    assert!(on_attrs("attribute:ecs.instance-type NOT_EQUALS t2.small"));
    assert!(!on_attrs("attribute:ecs.instance-type != t2.micro"));
    // A missing attribute equals nothing, so `!=` holds.
    assert!(!on_attrs("attribute:missing == x"));
    assert!(on_attrs("attribute:missing != x"));
    // An attribute without a value equals nothing either.
    assert!(!on_attrs("attribute:gpu == x"));
}

#[test]
fn no_spaces_around_symbols() {
    assert!(on_attrs("attribute:ecs.instance-type==t2.micro"));
    assert!(on_attrs(
        "attribute:ecs.os-type!=windows&&attribute:mem-gb>=16"
    ));
}

#[test]
fn exists_and_not_exists() {
    assert!(on_attrs("attribute:gpu exists"));
    assert!(on_attrs("attribute:ecs.os-type exists"));
    assert!(!on_attrs("attribute:missing exists"));
    assert!(on_attrs("attribute:missing !exists"));
    assert!(on_attrs("attribute:missing not_exists"));
    assert!(!on_attrs("attribute:gpu !exists"));
}

#[test]
fn in_and_not_in() {
    assert!(on_attrs(
        "attribute:ecs.instance-type in [t2.small, t2.micro]"
    ));
    assert!(on_attrs(
        "attribute:ecs.instance-type in (t2.small, t2.micro)"
    ));
    assert!(on_attrs("attribute:ecs.instance-type in [t2.micro]"));
    assert!(!on_attrs(
        "attribute:ecs.instance-type in [t2.small, t3.micro]"
    ));
    assert!(on_attrs(
        "attribute:ecs.instance-type !in [t2.small, t3.micro]"
    ));
    assert!(on_attrs("attribute:ecs.instance-type not_in [t2.small]"));
    assert!(!on_attrs(
        "attribute:ecs.instance-type not_in ['t2.micro', \"x\"]"
    ));
}

#[test]
fn matches_is_a_full_match() {
    assert!(on_attrs("attribute:ecs.instance-type =~ t2.*"));
    assert!(on_attrs("attribute:ecs.instance-type matches t2\\..*"));
    assert!(!on_attrs("attribute:ecs.instance-type =~ micro"));
    assert!(on_attrs("attribute:ecs.instance-type =~ .*micro"));
    assert!(!on_attrs("attribute:ecs.instance-type =~ t3.*"));
    assert!(on_attrs("attribute:ecs.instance-type !~ t3.*"));
    assert!(on_attrs("attribute:ecs.instance-type not_matches m5.*"));
    // Patterns with parentheses must be quoted.
    assert!(on_attrs(
        "attribute:ecs.instance-type =~ 't2\\.(micro|small)'"
    ));
}

#[test]
fn unquoted_patterns_may_use_classes_and_groups() {
    assert!(on_attrs("attribute:ecs.instance-type =~ t[23]\\..*"));
    assert!(on_attrs("attribute:ecs.instance-type =~ (t2|m5)\\.micro"));
    assert!(on_attrs(
        "attribute:ecs.instance-type =~ (t2|m5)\\.(micro|small) and attribute:gpu exists"
    ));
    assert!(on_attrs("(attribute:ecs.instance-type =~ t2.*)"));
    assert!(on_attrs("not(attribute:ecs.instance-type =~ m5.*)"));
    assert!(on_attrs(
        "attribute:ecs.instance-type =~ t2.*&&attribute:ecs.os-type==linux"
    ));
    assert!(on_attrs("attribute:ecs.instance-type =~ [a-z]2[.]micro"));
    assert!(!on_attrs("attribute:ecs.instance-type =~ t[3-9].*"));
    assert!(matches!(
        err("attribute:a =~ (b"),
        QueryError::InvalidPattern { position: 15, .. }
    ));
    assert!(matches!(
        err("attribute:a =~ )"),
        QueryError::UnexpectedToken { position: 15, .. }
    ));
    assert!(matches!(
        err("attribute:a =~"),
        QueryError::UnexpectedEnd { position: 14, .. }
    ));
}

#[test]
fn ecs_documentation_examples() {
    for expr in [
        "attribute:ecs.instance-type == t2.small",
        "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]",
        "attribute:ecs.instance-type =~ g2.* and attribute:ecs.availability-zone != us-east-1d",
        "attribute:ecs.instance-type in [t2.small, t2.medium] and attribute:ecs.availability-zone == us-east-1a",
        "not(task:group == database)",
        "task:group == service:production",
        "runningTasksCount == 0",
        "agentVersion < 1.14.5",
        "registeredAt >= 2018-06-18",
        "ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']",
        "attribute:ecs.os-type == linux",
        "(attribute:ecs.instance-type == t2.small or attribute:ecs.instance-type == t2.medium) and not(task:group == database)",
        "attribute:stack exists",
    ] {
        if let Err(e) = Query::parse(expr) {
            panic!("{expr}: {e}");
        }
    }
}

#[test]
fn ordered_comparisons_on_attributes() {
    assert!(on_attrs("attribute:mem-gb > 8"));
    assert!(on_attrs("attribute:mem-gb >= 16"));
    assert!(!on_attrs("attribute:mem-gb < 16"));
    assert!(on_attrs("attribute:mem-gb <= 16"));
    // Numeric, not string, order: "16" > "9".
    assert!(on_attrs("attribute:mem-gb greater_than 9"));
    assert!(on_attrs("attribute:mem-gb less_than_equal 100"));
    assert!(on_attrs("attribute:kernel >= 5.4.0"));
    assert!(on_attrs("attribute:kernel < 5.10.10"));
    assert!(on_attrs("attribute:ecs.os-type > abc"));
    assert!(!on_attrs("attribute:missing > 0"));
}

#[test]
fn boolean_operators_and_precedence() {
    assert!(on_attrs(
        "attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone != us-east-1d"
    ));
    assert!(on_attrs(
        "attribute:ecs.os-type == windows or attribute:ecs.os-type == linux"
    ));
    assert!(on_attrs(
        "attribute:ecs.os-type == windows || attribute:ecs.os-type == linux"
    ));
    assert!(!on_attrs(
        "attribute:ecs.os-type == windows && attribute:ecs.os-type == linux"
    ));
    assert!(on_attrs("not attribute:ecs.os-type == windows"));
    assert!(on_attrs("!(attribute:ecs.os-type == windows)"));
    assert!(on_attrs("not(attribute:ecs.os-type == windows)"));
    // `and` binds tighter than `or`.
    assert!(on_attrs(
        "attribute:ecs.os-type == linux or attribute:x == 1 and attribute:y == 2"
    ));
    assert!(!on_attrs(
        "(attribute:ecs.os-type == linux or attribute:x == 1) and attribute:y == 2"
    ));
    assert!(on_attrs(
        "attribute:gpu exists AND NOT attribute:missing exists"
    ));
}

#[test]
fn task_group_looks_at_tasks_on_the_instance() {
    let groups = vec!["service:web".to_string(), "family:batch".to_string()];
    let facts = InstanceFacts {
        task_groups: &groups,
        running_tasks_count: 2,
        ..InstanceFacts::default()
    };
    assert!(check("task:group == service:web", &facts));
    assert!(!check("task:group == service:db", &facts));
    assert!(check("task:group != service:db", &facts));
    assert!(!check("task:group != service:web", &facts));
    assert!(check("not(task:group == database)", &facts));
    assert!(check("task:group in [service:db, family:batch]", &facts));
    assert!(check("task:group =~ service:.*", &facts));
    assert!(check("task:group exists", &facts));
    let empty = InstanceFacts::default();
    assert!(!check("task:group exists", &empty));
    assert!(check("task:group !exists", &empty));
    assert!(check("task:group != service:web", &empty));
}

#[test]
fn builtin_subjects() {
    let a = t2_micro();
    let facts = InstanceFacts {
        attributes: &a,
        ec2_instance_id: Some("i-abcd1234"),
        agent_connected: false,
        agent_version: Some("1.14.5"),
        registered_at: parse_timestamp("2018-06-18T22:28:28Z"),
        running_tasks_count: 3,
        ..InstanceFacts::default()
    };
    assert!(check("ec2InstanceId == i-abcd1234", &facts));
    assert!(check(
        "ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']",
        &facts
    ));
    assert!(check("ec2InstanceId =~ i-abcd.*", &facts));
    assert!(check("agentConnected == false", &facts));
    assert!(check("agentConnected != true", &facts));
    assert!(check("agentVersion < 1.15.0", &facts));
    assert!(check("agentVersion >= 1.14.5", &facts));
    assert!(check("agentVersion == 1.14.5", &facts));
    assert!(!check("agentVersion > 1.14.5", &facts));
    assert!(check("registeredAt < 2018-06-19", &facts));
    assert!(check("registeredAt > 2018-06-18", &facts));
    assert!(check("registeredAt == 2018-06-18T22:28:28+00:00", &facts));
    assert!(check("registeredAt == 2018-06-18T23:28:28+01:00", &facts));
    assert!(check("registeredAt <= 2018-06-18T22:28:28", &facts));
    assert!(check("runningTasksCount == 3", &facts));
    assert!(check("runningTasksCount > 2", &facts));
    assert!(check("runningTasksCount != 0", &facts));
    assert!(!check("runningTasksCount < 3", &facts));
    // Unknown facts never satisfy positive comparisons.
    let bare = InstanceFacts::default();
    assert!(!check("ec2InstanceId == i-abcd1234", &bare));
    assert!(!check("agentVersion > 0.0.1", &bare));
    assert!(!check("registeredAt > 1970-01-01", &bare));
}

#[test]
fn quoted_values() {
    let a = attrs(&[("label", Some("hello world")), ("q", Some("it's"))]);
    let facts = InstanceFacts {
        attributes: &a,
        ..InstanceFacts::default()
    };
    assert!(check("attribute:label == 'hello world'", &facts));
    assert!(check("attribute:label == \"hello world\"", &facts));
    assert!(check("attribute:q == 'it\\'s'", &facts));
    assert!(check("attribute:q == \"it's\"", &facts));
}

#[test]
fn depends_on_tasks() {
    let q = |s| Query::parse(s).map(|q| q.depends_on_tasks()).ok();
    assert_eq!(q("attribute:a == b"), Some(false));
    assert_eq!(q("attribute:a == b and not task:group == x"), Some(true));
    assert_eq!(q("runningTasksCount == 0"), Some(true));
    assert_eq!(q("agentConnected == true"), Some(false));
}

#[test]
fn display_and_from_str_round_trip() {
    let q: Query = "attribute:a == b".parse().expect("parses");
    assert_eq!(q.to_string(), "attribute:a == b");
    assert_eq!(q.source(), "attribute:a == b");
    assert!(matches!(q.expr(), Expr::Compare(_)));
}

#[test]
fn timestamps() {
    assert_eq!(parse_timestamp("1970-01-01"), Some(0));
    assert_eq!(parse_timestamp("1970-01-02T00:00:01Z"), Some(86_401));
    assert_eq!(parse_timestamp("2018-06-18T22:28:28Z"), Some(1_529_360_908));
    assert_eq!(
        parse_timestamp("2018-06-18T22:28:28-01:00"),
        Some(1_529_364_508)
    );
    assert_eq!(parse_timestamp("2018-02-30"), None);
    assert_eq!(parse_timestamp("2018-06-18T22:28"), None);
    assert_eq!(parse_timestamp("2018-06-18T22:28:28+0100"), None);
    assert_eq!(parse_timestamp("yesterday"), None);
}

#[test]
fn error_empty_and_too_long() {
    assert_eq!(err(""), QueryError::Empty);
    assert_eq!(err("   "), QueryError::Empty);
    let long = format!("attribute:a == {}", "x".repeat(MAX_EXPRESSION_LEN));
    assert!(matches!(err(&long), QueryError::TooLong { .. }));
    assert_eq!(QueryError::Empty.position(), None);
}

#[test]
fn error_unknown_subject_names_it_and_its_position() {
    let e = err("attribute:a == b and instanceType == t2");
    assert_eq!(
        e,
        QueryError::UnknownSubject {
            subject: "instanceType".into(),
            position: 21
        }
    );
    assert!(
        e.to_string()
            .contains("unknown subject `instanceType` at position 21"),
        "{e}"
    );
    assert_eq!(
        err("attribute: == x"),
        QueryError::EmptyAttributeName { position: 0 }
    );
}

#[test]
fn error_missing_or_bad_operator() {
    assert!(matches!(
        err("attribute:a"),
        QueryError::UnexpectedEnd { position: 11, .. }
    ));
    let e = err("attribute:a is b");
    assert!(
        matches!(e, QueryError::UnexpectedToken { ref found, position: 12, .. } if found == "is"),
        "{e:?}"
    );
    assert!(e.to_string().contains("expected an operator"), "{e}");
    assert!(matches!(
        err("attribute:a = b"),
        QueryError::UnexpectedChar {
            found: '=',
            position: 12,
            ..
        }
    ));
    assert!(
        err("attribute:a = b")
            .to_string()
            .contains("did you mean `==`")
    );
    // `! exists` with a space is not `!exists`.
    assert!(matches!(
        err("attribute:a ! exists"),
        QueryError::UnexpectedToken { position: 12, .. }
    ));
}

#[test]
fn error_operator_not_supported_for_subject() {
    let e = err("task:group > 3");
    assert_eq!(
        e,
        QueryError::UnsupportedOperator {
            operator: ">".into(),
            subject: "task:group".into(),
            position: 11
        }
    );
    assert!(matches!(
        err("runningTasksCount =~ 1.*"),
        QueryError::UnsupportedOperator { .. }
    ));
    assert!(matches!(
        err("agentVersion in [1, 2]"),
        QueryError::UnsupportedOperator { .. }
    ));
    assert!(matches!(
        err("ec2InstanceId exists"),
        QueryError::UnsupportedOperator { .. }
    ));
    assert!(matches!(
        err("agentConnected >= true"),
        QueryError::UnsupportedOperator { .. }
    ));
}

#[test]
fn error_missing_value() {
    assert!(matches!(
        err("attribute:a =="),
        QueryError::UnexpectedEnd {
            expected: "a value",
            position: 14
        }
    ));
    assert!(matches!(
        err("attribute:a == )"),
        QueryError::UnexpectedToken { position: 15, .. }
    ));
}

#[test]
fn error_bad_lists() {
    assert!(matches!(
        err("attribute:a in b"),
        QueryError::UnexpectedToken { position: 15, .. }
    ));
    assert!(matches!(
        err("attribute:a in [b, c"),
        QueryError::UnexpectedEnd { .. }
    ));
    assert!(matches!(
        err("attribute:a in [b c]"),
        QueryError::UnexpectedToken { position: 18, .. }
    ));
    assert!(matches!(
        err("attribute:a in [b, c)"),
        QueryError::UnexpectedToken { position: 20, .. }
    ));
    assert!(matches!(
        err("attribute:a in []"),
        QueryError::UnexpectedToken { position: 16, .. }
    ));
}

#[test]
fn error_invalid_pattern() {
    let e = err("attribute:a =~ 'a(b'");
    assert!(
        matches!(e, QueryError::InvalidPattern { position: 15, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("invalid pattern `a(b` at position 15"),
        "{e}"
    );
}

#[test]
fn error_invalid_scalars() {
    assert!(matches!(
        err("runningTasksCount > many"),
        QueryError::InvalidNumber { position: 20, .. }
    ));
    assert!(matches!(
        err("runningTasksCount > -1"),
        QueryError::InvalidNumber { .. }
    ));
    assert!(matches!(
        err("agentVersion > latest"),
        QueryError::InvalidVersion { position: 15, .. }
    ));
    assert!(matches!(
        err("registeredAt > yesterday"),
        QueryError::InvalidDate { position: 15, .. }
    ));
}

#[test]
fn error_unbalanced_parentheses_and_trailing_tokens() {
    assert!(matches!(
        err("(attribute:a == b"),
        QueryError::UnexpectedEnd {
            expected: "`)`",
            ..
        }
    ));
    assert!(matches!(
        err("attribute:a == b)"),
        QueryError::UnexpectedToken { position: 16, .. }
    ));
    let e = err("attribute:a == b c");
    assert!(
        matches!(e, QueryError::UnexpectedToken { position: 17, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("expected `and`, `or` or the end"),
        "{e}"
    );
    assert!(matches!(
        err("attribute:a == b and"),
        QueryError::UnexpectedEnd { .. }
    ));
    assert!(matches!(
        err("and attribute:a == b"),
        QueryError::UnknownSubject { position: 0, .. }
    ));
    assert!(matches!(
        err("(attribute:a == b] "),
        QueryError::UnexpectedToken { position: 17, .. }
    ));
}

#[test]
fn error_unterminated_quote() {
    assert_eq!(
        err("attribute:a == 'abc"),
        QueryError::UnterminatedQuote { position: 15 }
    );
    assert_eq!(
        err("attribute:a == \"abc\\"),
        QueryError::UnterminatedQuote { position: 15 }
    );
}

#[test]
fn nesting_is_bounded_so_no_expression_can_overflow_the_stack() {
    use super::MAX_NESTING;
    let ok = format!(
        "{}agentConnected == true{}",
        "(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    assert!(Query::parse(&ok).is_ok(), "{MAX_NESTING} levels parse");
    for deep in [
        format!(
            "{}agentConnected == true{}",
            "(".repeat(900),
            ")".repeat(900)
        ),
        format!("{}agentConnected == true", "!".repeat(1970)),
        format!("{}agentConnected == true", "not ".repeat(400)),
        format!(
            "{}agentConnected == true{}",
            "!(".repeat(650),
            ")".repeat(650)
        ),
    ] {
        let err = Query::parse(&deep).expect_err("too deep");
        assert!(
            matches!(err, QueryError::TooDeep { .. }),
            "{err} for {}…",
            &deep[..20]
        );
    }
}
