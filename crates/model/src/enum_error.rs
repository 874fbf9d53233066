//! ECS's answer to a value outside an enumeration: `InvalidParameterException` with
//! "`<member>` should be one of [`A`,`B`,…]" (e.g. "include should be one of
//! [ATTACHMENTS,SETTINGS,STATISTICS,TAGS]", "launch type should be one of
//! [EC2,FARGATE,EXTERNAL]").
//!
//! The [`wire`](crate::wire) enums derive serde's `Deserialize`, whose error for an
//! unknown variant is "unknown variant `X`, expected one of `A`, `B`" ("expected `A` or
//! `B`" for two, "expected `A`" for one); [`enum_message`] turns that into ECS's words.

/// How ECS names a member in its enum messages where that is not the member's own name.
const SPOKEN: &[(&str, &str)] = &[
    ("launchType", "launch type"),
    ("schedulingStrategy", "Scheduling strategy"),
];

/// The valid values a serde "unknown variant" message lists, or `None` for any other
/// message.
pub fn expected_variants(serde_message: &str) -> Option<Vec<String>> {
    let rest = serde_message.strip_prefix("unknown variant `")?;
    let (_, expected) = rest.split_once("`, expected ")?;
    // serde_json adds the position when it parses text itself.
    let expected = match expected.rfind(" at line ") {
        Some(i) => &expected[..i],
        None => expected,
    };
    let names: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    (!names.is_empty()).then_some(names)
}

/// ECS's message for a value of `path` (serde_path_to_error's path, e.g. `launchType` or
/// `containerDefinitions[0].portMappings[0].protocol`) outside its enumeration, from
/// serde's message; `None` when `serde_message` is not about an unknown variant.
pub fn enum_message(path: &str, serde_message: &str) -> Option<String> {
    let values = expected_variants(serde_message)?;
    // A list's item is named by the list, as ECS does ("include", not "include[0]").
    let path = match path.strip_suffix(']').and_then(|p| p.rsplit_once('[')) {
        Some((list, index)) if index.bytes().all(|b| b.is_ascii_digit()) => list,
        _ => path,
    };
    let member = SPOKEN
        .iter()
        .find(|(name, _)| *name == path)
        .map_or(path, |(_, spoken)| spoken);
    Some(format!("{member} should be one of [{}]", values.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ListTasksRequest;

    /// serde's message for `json`, which must not deserialize.
    fn serde_message(json: serde_json::Value) -> String {
        serde_json::from_value::<ListTasksRequest>(json)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn launch_type_is_named_the_ecs_way() {
        let msg = serde_message(serde_json::json!({"launchType": "MOON"}));
        assert_eq!(
            enum_message("launchType", &msg).unwrap(),
            "launch type should be one of [EC2,FARGATE,EXTERNAL,MANAGED_INSTANCES]"
        );
    }

    #[test]
    fn other_members_keep_their_path() {
        let msg = serde_message(serde_json::json!({"desiredStatus": "SLEEPING"}));
        assert_eq!(
            enum_message("desiredStatus", &msg).unwrap(),
            "desiredStatus should be one of [RUNNING,PENDING,STOPPED]"
        );
    }

    #[test]
    fn list_items_are_named_by_their_list() {
        let msg = "unknown variant `ALL`, expected one of `TAGS`";
        assert_eq!(
            enum_message("include[0]", msg).unwrap(),
            "include should be one of [TAGS]"
        );
        assert_eq!(
            enum_message("containerDefinitions[0].portMappings[0].protocol", msg).unwrap(),
            "containerDefinitions[0].portMappings[0].protocol should be one of [TAGS]"
        );
    }

    #[test]
    fn two_and_one_variants_and_positions() {
        assert_eq!(
            expected_variants("unknown variant `x`, expected `tcp` or `udp` at line 1 column 9"),
            Some(vec!["tcp".to_owned(), "udp".to_owned()])
        );
        assert_eq!(
            expected_variants("unknown variant `x`, expected `TAGS`"),
            Some(vec!["TAGS".to_owned()])
        );
        assert_eq!(
            expected_variants("invalid type: string, expected u32"),
            None
        );
        assert_eq!(
            expected_variants("unknown variant `x`, there are no variants"),
            None
        );
    }
}
