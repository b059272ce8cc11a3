//! The CLI's command line, as the Agent SDK builds it.

use serde_json::Value;

/// Arguments for one run: stream-json both ways, the model, the bare schema, the turn
/// limit, and permissions bypassed (the sandbox is the boundary).
pub fn cli_args(model: &str, schema: Option<&Value>, max_turns: Option<u32>) -> Vec<String> {
    let mut args = vec![
        "--output-format".to_owned(),
        "stream-json".to_owned(),
        // Print mode with stream-json output refuses to run without it.
        "--verbose".to_owned(),
        "--input-format".to_owned(),
        "stream-json".to_owned(),
        format!("--model={model}"),
    ];
    if let Some(schema) = schema {
        args.push(format!("--json-schema={schema}"));
    }
    if let Some(turns) = max_turns {
        args.push(format!("--max-turns={turns}"));
    }
    args.push("--permission-mode=bypassPermissions".to_owned());
    args.push("--allow-dangerously-skip-permissions".to_owned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_and_turns_are_passed_as_single_arguments() {
        let schema = serde_json::json!({"type": "object"});
        let args = cli_args("claude-x", Some(&schema), Some(4));
        assert!(args.contains(&"--model=claude-x".to_owned()));
        assert!(args.contains(&r#"--json-schema={"type":"object"}"#.to_owned()));
        assert!(args.contains(&"--max-turns=4".to_owned()));
        assert!(args.contains(&"--permission-mode=bypassPermissions".to_owned()));
        let bare = cli_args("m", None, None);
        assert!(
            !bare
                .iter()
                .any(|a| a.starts_with("--json-schema") || a.starts_with("--max-turns"))
        );
    }
}
