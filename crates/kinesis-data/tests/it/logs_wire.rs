//! CloudWatch Logs with aws-sdk-cloudwatchlogs against the in-process server: groups,
//! streams and events (tokens, paging, filter patterns, retention, tags), AWS's error codes,
//! durability across a restart and IAM checks; function output landing in
//! `/aws/lambda/<name>` (and in a custom `LoggingConfig.LogGroup`); and CloudFormation's
//! `AWS::Logs::LogGroup` backing a function's `LoggingConfig`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatchlogs::types::{FilteredLogEvent, InputLogEvent, OrderBy};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{LogFormat, LoggingConfig};
use kd_test_support::{TestServer, logs_client, wait_until};
use serde_json::json;

use crate::assert_aws_error;
use crate::common::user_with;
use crate::lambda_wire::{create_python, lambda_role};

type R = anyhow::Result<()>;

const DEADLINE: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn event(ts: i64, message: &str) -> anyhow::Result<InputLogEvent> {
    Ok(InputLogEvent::builder().timestamp(ts).message(message).build()?)
}

#[tokio::test]
async fn groups_streams_events_errors_and_paging() -> R {
    let mut server = TestServer::start().await?;
    let logs = server.logs();

    for i in 0..7 {
        logs.create_log_group()
            .log_group_name(format!("/app/g{i}"))
            .send()
            .await?;
    }
    let msg = assert_aws_error!(
        logs.create_log_group().log_group_name("/app/g0").send().await,
        "ResourceAlreadyExistsException",
        400
    );
    assert_eq!(msg, "The specified log group already exists");
    assert_aws_error!(
        logs.create_log_group().log_group_name("bad name").send().await,
        "InvalidParameterException",
        400
    );
    // Pages of three, by name.
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = logs
            .describe_log_groups()
            .log_group_name_prefix("/app/")
            .limit(3)
            .set_next_token(token)
            .send()
            .await?;
        assert!(page.log_groups().len() <= 3);
        names.extend(
            page.log_groups()
                .iter()
                .filter_map(|g| g.log_group_name().map(str::to_owned)),
        );
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("/app/g{i}")).collect::<Vec<_>>());
    assert_aws_error!(
        logs.describe_log_groups().limit(51).send().await,
        "InvalidParameterException",
        400
    );

    // Streams and events.
    let g = "/app/g0";
    for s in ["alpha", "beta"] {
        logs.create_log_stream()
            .log_group_name(g)
            .log_stream_name(s)
            .send()
            .await?;
    }
    assert_aws_error!(
        logs.create_log_stream()
            .log_group_name(g)
            .log_stream_name("alpha")
            .send()
            .await,
        "ResourceAlreadyExistsException",
        400
    );
    let msg = assert_aws_error!(
        logs.create_log_stream()
            .log_group_name("/nope")
            .log_stream_name("s")
            .send()
            .await,
        "ResourceNotFoundException",
        400
    );
    assert_eq!(msg, "The specified log group does not exist.");
    let t = now_ms() - 60_000;
    let put = logs
        .put_log_events()
        .log_group_name(g)
        .log_stream_name("alpha")
        .log_events(event(t + 30, "INFO three")?)
        .log_events(event(t + 40, "ERROR four")?)
        .send()
        .await?;
    assert!(put.next_sequence_token().is_some());
    assert!(put.rejected_log_events_info().is_none());
    // An older batch still reads in timestamp order.
    logs.put_log_events()
        .log_group_name(g)
        .log_stream_name("alpha")
        .log_events(event(t + 10, "ERROR one")?)
        .log_events(event(t + 20, "INFO two")?)
        .send()
        .await?;
    logs.put_log_events()
        .log_group_name(g)
        .log_stream_name("beta")
        .log_events(event(t + 25, "ERROR from beta")?)
        .send()
        .await?;
    let msg = assert_aws_error!(
        logs.put_log_events()
            .log_group_name(g)
            .log_stream_name("alpha")
            .log_events(event(t + 2, "b")?)
            .log_events(event(t + 1, "a")?)
            .send()
            .await,
        "InvalidParameterException",
        400
    );
    assert_eq!(
        msg,
        "Log events in a single PutLogEvents request must be in chronological order."
    );
    let msg = assert_aws_error!(
        logs.put_log_events()
            .log_group_name(g)
            .log_stream_name("gamma")
            .log_events(event(t, "x")?)
            .send()
            .await,
        "ResourceNotFoundException",
        400
    );
    assert_eq!(msg, "The specified log stream does not exist.");
    let rejected = logs
        .put_log_events()
        .log_group_name(g)
        .log_stream_name("beta")
        .log_events(event(now_ms() + 3 * 3_600_000, "from the future")?)
        .send()
        .await?;
    assert_eq!(
        rejected
            .rejected_log_events_info()
            .and_then(|r| r.too_new_log_event_start_index()),
        Some(0)
    );

    // GetLogEvents: from the head in pages of two, forward and backward tokens.
    let head = logs
        .get_log_events()
        .log_group_name(g)
        .log_stream_name("alpha")
        .start_from_head(true)
        .limit(2)
        .send()
        .await?;
    let texts = |events: &[aws_sdk_cloudwatchlogs::types::OutputLogEvent]| -> Vec<String> {
        events.iter().filter_map(|e| e.message().map(str::to_owned)).collect()
    };
    assert_eq!(texts(head.events()), ["ERROR one", "INFO two"]);
    assert!(head.next_forward_token().is_some_and(|t| t.starts_with("f/")));
    let next = logs
        .get_log_events()
        .log_group_name(g)
        .log_stream_name("alpha")
        .next_token(head.next_forward_token().unwrap_or_default())
        .limit(2)
        .send()
        .await?;
    assert_eq!(texts(next.events()), ["INFO three", "ERROR four"]);
    let end = logs
        .get_log_events()
        .log_group_name(g)
        .log_stream_name("alpha")
        .next_token(next.next_forward_token().unwrap_or_default())
        .send()
        .await?;
    assert!(end.events().is_empty());
    assert_eq!(end.next_forward_token(), next.next_forward_token());
    let back = logs
        .get_log_events()
        .log_group_name(g)
        .log_stream_name("alpha")
        .next_token(next.next_backward_token().unwrap_or_default())
        .send()
        .await?;
    assert_eq!(texts(back.events()), ["ERROR one", "INFO two"]);
    let tail = logs
        .get_log_events()
        .log_group_name(g)
        .log_stream_name("alpha")
        .limit(1)
        .send()
        .await?;
    assert_eq!(texts(tail.events()), ["ERROR four"]);
    assert_aws_error!(
        logs.get_log_events()
            .log_group_name(g)
            .log_stream_name("alpha")
            .next_token("f/garbage")
            .send()
            .await,
        "InvalidParameterException",
        400
    );

    // FilterLogEvents: every stream merged by time, patterns, paging.
    let all = logs.filter_log_events().log_group_name(g).send().await?;
    let merged: Vec<(&str, &str)> = all
        .events()
        .iter()
        .map(|e| (e.log_stream_name().unwrap_or_default(), e.message().unwrap_or_default()))
        .collect();
    assert_eq!(
        merged,
        [
            ("alpha", "ERROR one"),
            ("alpha", "INFO two"),
            ("beta", "ERROR from beta"),
            ("alpha", "INFO three"),
            ("alpha", "ERROR four"),
        ]
    );
    let mut errors: Vec<FilteredLogEvent> = Vec::new();
    let mut token = None;
    loop {
        let page = logs
            .filter_log_events()
            .log_group_name(g)
            .filter_pattern("ERROR")
            .limit(2)
            .set_next_token(token)
            .send()
            .await?;
        errors.extend(page.events().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(
        errors.iter().filter_map(|e| e.message()).collect::<Vec<_>>(),
        ["ERROR one", "ERROR from beta", "ERROR four"]
    );
    let phrase = logs
        .filter_log_events()
        .log_group_name(g)
        .log_stream_names("alpha")
        .filter_pattern("\"INFO t\" -two")
        .start_time(t + 20)
        .end_time(t + 40)
        .send()
        .await?;
    assert_eq!(
        phrase.events().iter().filter_map(|e| e.message()).collect::<Vec<_>>(),
        ["INFO three"]
    );
    assert_aws_error!(
        logs.filter_log_events()
            .log_group_name(g)
            .filter_pattern("{ $.level = \"ERROR\" }")
            .send()
            .await,
        "InvalidParameterException",
        400
    );

    // DescribeLogStreams by last event time, newest first.
    let streams = logs
        .describe_log_streams()
        .log_group_name(g)
        .order_by(OrderBy::LastEventTime)
        .descending(true)
        .send()
        .await?;
    let order: Vec<&str> = streams
        .log_streams()
        .iter()
        .filter_map(|s| s.log_stream_name())
        .collect();
    assert_eq!(order, ["alpha", "beta"]);
    let alpha = &streams.log_streams()[0];
    assert_eq!(
        (alpha.first_event_timestamp(), alpha.last_event_timestamp()),
        (Some(t + 10), Some(t + 40))
    );
    assert_eq!(
        alpha.arn(),
        Some("arn:aws:logs:us-east-1:000000000000:log-group:/app/g0:log-stream:alpha")
    );
    assert_aws_error!(
        logs.describe_log_streams()
            .log_group_name(g)
            .order_by(OrderBy::LastEventTime)
            .log_stream_name_prefix("a")
            .send()
            .await,
        "InvalidParameterException",
        400
    );

    // Retention and tags.
    logs.put_retention_policy()
        .log_group_name(g)
        .retention_in_days(7)
        .send()
        .await?;
    assert_aws_error!(
        logs.put_retention_policy()
            .log_group_name(g)
            .retention_in_days(2)
            .send()
            .await,
        "InvalidParameterException",
        400
    );
    let arn = "arn:aws:logs:us-east-1:000000000000:log-group:/app/g0";
    logs.tag_resource()
        .resource_arn(arn)
        .tags("team", "data")
        .send()
        .await?;
    let tags = logs.list_tags_for_resource().resource_arn(arn).send().await?;
    assert_eq!(
        tags.tags().and_then(|t| t.get("team")).map(String::as_str),
        Some("data")
    );
    let described = logs.describe_log_groups().log_group_name_prefix(g).send().await?;
    let group = described
        .log_groups()
        .first()
        .ok_or_else(|| anyhow::anyhow!("no group"))?;
    assert_eq!(group.retention_in_days(), Some(7));
    assert_eq!(
        group.arn(),
        Some("arn:aws:logs:us-east-1:000000000000:log-group:/app/g0:*")
    );
    assert!(group.stored_bytes().is_some_and(|b| b > 0));

    // Everything survives a restart.
    server.restart().await?;
    let logs = server.logs();
    let again = logs
        .get_log_events()
        .log_group_name(g)
        .log_stream_name("alpha")
        .start_from_head(true)
        .send()
        .await?;
    assert_eq!(again.events().len(), 4);
    let described = logs.describe_log_groups().log_group_name_prefix(g).send().await?;
    assert_eq!(
        described.log_groups().first().and_then(|g| g.retention_in_days()),
        Some(7)
    );

    logs.delete_retention_policy().log_group_name(g).send().await?;
    logs.delete_log_stream()
        .log_group_name(g)
        .log_stream_name("beta")
        .send()
        .await?;
    assert_aws_error!(
        logs.get_log_events()
            .log_group_name(g)
            .log_stream_name("beta")
            .send()
            .await,
        "ResourceNotFoundException",
        400
    );
    logs.delete_log_group().log_group_name(g).send().await?;
    assert_aws_error!(
        logs.delete_log_group().log_group_name(g).send().await,
        "ResourceNotFoundException",
        400
    );
    server.stop().await
}

#[tokio::test]
async fn iam_decides_per_log_group_arn() -> R {
    let server = TestServer::start().await?;
    let (id, secret) = user_with(
        &server,
        "writer",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"logs:*",
            "Resource":"arn:aws:logs:us-east-1:000000000000:log-group:/team/a:*"}]}"#,
    )
    .await?;
    let writer = logs_client(&server.endpoint(), "us-east-1", &id, &secret);
    writer.create_log_group().log_group_name("/team/a").send().await?;
    writer
        .create_log_stream()
        .log_group_name("/team/a")
        .log_stream_name("s")
        .send()
        .await?;
    writer
        .put_log_events()
        .log_group_name("/team/a")
        .log_stream_name("s")
        .log_events(event(now_ms(), "allowed")?)
        .send()
        .await?;
    let got = writer.filter_log_events().log_group_name("/team/a").send().await?;
    assert_eq!(got.events().len(), 1);
    let msg = assert_aws_error!(
        writer.create_log_group().log_group_name("/team/b").send().await,
        "AccessDeniedException",
        400
    );
    assert!(msg.contains("logs:CreateLogGroup"), "{msg}");
    assert_aws_error!(writer.describe_log_groups().send().await, "AccessDeniedException", 400);
    server.stop().await
}

const PY_PRINT: &str = r#"
def handler(event, context):
    print("marker-" + event["id"])
    return {"group": context.log_group_name, "stream": context.log_stream_name}
"#;

/// Polls FilterLogEvents on `group` until every one of `wanted` appears in some message;
/// returns the events.
async fn wait_for_lines(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    wanted: &[&str],
) -> anyhow::Result<Vec<FilteredLogEvent>> {
    wait_until(DEADLINE, &format!("{wanted:?} in {group}"), || {
        let logs = logs.clone();
        let group = group.to_owned();
        async move {
            let out = logs.filter_log_events().log_group_name(group).send().await.ok()?;
            let events = out.events().to_vec();
            wanted
                .iter()
                .all(|w| events.iter().any(|e| e.message().is_some_and(|m| m.contains(w))))
                .then_some(events)
        }
    })
    .await
}

/// `YYYY/MM/DD/[$LATEST]<32 hex>`, as Lambda names an instance's stream.
fn is_lambda_stream(name: &str) -> bool {
    let Some((date, rest)) = name.split_at_checked(10) else {
        return false;
    };
    let date_ok = date.len() == 10
        && date
            .char_indices()
            .all(|(i, c)| if i == 4 || i == 7 { c == '/' } else { c.is_ascii_digit() });
    let id = rest.strip_prefix("/[$LATEST]").unwrap_or_default();
    date_ok && id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn invoke(server: &TestServer, name: &str, id: &str) -> anyhow::Result<serde_json::Value> {
    let out = server
        .lambda()
        .invoke()
        .function_name(name)
        .payload(Blob::new(json!({"id": id}).to_string()))
        .send()
        .await?;
    assert!(out.function_error().is_none(), "{:?}", out.payload());
    Ok(out
        .payload()
        .and_then(|p| serde_json::from_slice(p.as_ref()).ok())
        .unwrap_or_default())
}

#[tokio::test]
async fn function_output_lands_in_its_log_group() -> R {
    let server = TestServer::start().await?;
    let logs = server.logs();
    let lambda = server.lambda();
    let role = lambda_role(&server, "log-role").await?;

    // Default group: /aws/lambda/<name>, made on first use.
    create_python(&server, "printer", "app.handler", &role, PY_PRINT).await?;
    let conf = lambda
        .get_function_configuration()
        .function_name("printer")
        .send()
        .await?;
    assert_eq!(
        conf.logging_config().and_then(|l| l.log_group()),
        Some("/aws/lambda/printer")
    );
    let answer = invoke(&server, "printer", "one").await?;
    assert_eq!(answer["group"], "/aws/lambda/printer");
    let events = wait_for_lines(
        &logs,
        "/aws/lambda/printer",
        &["marker-one", "START RequestId:", "END RequestId:", "REPORT RequestId:"],
    )
    .await?;
    let streams: std::collections::BTreeSet<&str> = events.iter().filter_map(|e| e.log_stream_name()).collect();
    assert_eq!(streams.len(), 1, "{streams:?}");
    let stream = streams.iter().next().copied().unwrap_or_default();
    assert!(is_lambda_stream(stream), "{stream}");
    assert_eq!(answer["stream"], stream);
    let start = events
        .iter()
        .position(|e| e.message().is_some_and(|m| m.starts_with("START RequestId:")));
    let marker = events
        .iter()
        .position(|e| e.message().is_some_and(|m| m.contains("marker-one")));
    assert!(start < marker, "START comes before the function's own line");
    // The per-function file is still written.
    let file = server.data_dir().join("lambda/run/logs/printer.log");
    assert!(std::fs::read_to_string(&file)?.contains("marker-one"));

    // A custom group, given at create.
    lambda
        .create_function()
        .function_name("custom")
        .runtime(aws_sdk_lambda::types::Runtime::Python312)
        .role(&role)
        .handler("app.handler")
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(Blob::new(crate::lambda_wire::zip(&[("app.py", PY_PRINT)])))
                .build(),
        )
        .logging_config(LoggingConfig::builder().log_group("/custom/app-logs").build())
        .send()
        .await?;
    let conf = lambda.get_function().function_name("custom").send().await?;
    let logging = conf.configuration().and_then(|c| c.logging_config());
    assert_eq!(logging.and_then(|l| l.log_group()), Some("/custom/app-logs"));
    assert_eq!(logging.and_then(|l| l.log_format()), Some(&LogFormat::Text));
    let answer = invoke(&server, "custom", "two").await?;
    assert_eq!(answer["group"], "/custom/app-logs");
    wait_for_lines(&logs, "/custom/app-logs", &["marker-two", "REPORT RequestId:"]).await?;
    let default = logs
        .describe_log_groups()
        .log_group_name_prefix("/aws/lambda/custom")
        .send()
        .await?;
    assert!(default.log_groups().is_empty());

    // UpdateFunctionConfiguration moves the output; levels need JSON.
    assert_aws_error!(
        lambda
            .update_function_configuration()
            .function_name("custom")
            .logging_config(
                LoggingConfig::builder()
                    .application_log_level(aws_sdk_lambda::types::ApplicationLogLevel::Debug)
                    .build()
            )
            .send()
            .await,
        "InvalidParameterValueException",
        400
    );
    let updated = lambda
        .update_function_configuration()
        .function_name("custom")
        .logging_config(
            LoggingConfig::builder()
                .log_format(LogFormat::Json)
                .log_group("/custom/moved")
                .build(),
        )
        .send()
        .await?;
    let logging = updated.logging_config();
    assert_eq!(logging.and_then(|l| l.log_group()), Some("/custom/moved"));
    assert_eq!(
        logging.and_then(|l| l.application_log_level()).map(|l| l.as_str()),
        Some("INFO")
    );
    invoke(&server, "custom", "three").await?;
    wait_for_lines(&logs, "/custom/moved", &["marker-three"]).await?;
    server.stop().await
}

#[tokio::test]
async fn cloudformation_log_group_backs_a_function() -> R {
    use aws_sdk_cloudformation::types::{Capability, StackStatus};
    let server = TestServer::start().await?;
    let cfn = server.cloudformation();
    let logs = server.logs();
    let template = |retention: u32| {
        json!({
            "Resources": {
                "Role": {"Type": "AWS::IAM::Role", "Properties": {
                    "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole"}]}}},
                "Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {
                    "LogGroupName": "/stack/fn-logs", "RetentionInDays": retention,
                    "Tags": [{"Key": "team", "Value": "data"}]}},
                "Unnamed": {"Type": "AWS::Logs::LogGroup"},
                "Fn": {"Type": "AWS::Lambda::Function", "Properties": {
                    "Runtime": "python3.12", "Handler": "index.handler",
                    "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                    "Code": {"ZipFile": PY_PRINT},
                    "LoggingConfig": {"LogGroup": {"Ref": "Logs"}}}}
            },
            "Outputs": {
                "GroupArn": {"Value": {"Fn::GetAtt": ["Logs", "Arn"]}},
                "Unnamed": {"Value": {"Ref": "Unnamed"}},
                "FnName": {"Value": {"Ref": "Fn"}}
            }
        })
        .to_string()
    };
    let settled = |what: &'static str| {
        let cfn = cfn.clone();
        async move {
            wait_until(DEADLINE, what, || {
                let cfn = cfn.clone();
                async move {
                    let out = cfn.describe_stacks().stack_name("logs").send().await.ok()?;
                    let s = out.stacks().first()?.clone();
                    (!s.stack_status()?.as_str().ends_with("_IN_PROGRESS")).then_some(s)
                }
            })
            .await
        }
    };
    cfn.create_stack()
        .stack_name("logs")
        .template_body(template(7))
        .capabilities(Capability::CapabilityIam)
        .send()
        .await?;
    let stack = settled("the stack to be created").await?;
    assert_eq!(
        stack.stack_status(),
        Some(&StackStatus::CreateComplete),
        "{:?}",
        stack.stack_status_reason()
    );
    let output = |k: &str| {
        stack
            .outputs()
            .iter()
            .find(|o| o.output_key() == Some(k))
            .and_then(|o| o.output_value())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        output("GroupArn"),
        "arn:aws:logs:us-east-1:000000000000:log-group:/stack/fn-logs:*"
    );
    let unnamed = output("Unnamed");
    assert!(unnamed.starts_with("logs-Unnamed-"), "{unnamed}");
    let group = logs
        .describe_log_groups()
        .log_group_name_prefix("/stack/")
        .send()
        .await?;
    assert_eq!(group.log_groups().first().and_then(|g| g.retention_in_days()), Some(7));
    let tags = logs
        .list_tags_for_resource()
        .resource_arn("arn:aws:logs:us-east-1:000000000000:log-group:/stack/fn-logs")
        .send()
        .await?;
    assert_eq!(
        tags.tags().and_then(|t| t.get("team")).map(String::as_str),
        Some("data")
    );
    let fn_name = output("FnName");
    let answer = invoke(&server, &fn_name, "stack").await?;
    assert_eq!(answer["group"], "/stack/fn-logs");
    wait_for_lines(&logs, "/stack/fn-logs", &["marker-stack", "REPORT RequestId:"]).await?;

    cfn.update_stack()
        .stack_name("logs")
        .template_body(template(14))
        .capabilities(Capability::CapabilityIam)
        .send()
        .await?;
    let stack = settled("the stack to be updated").await?;
    assert_eq!(stack.stack_status(), Some(&StackStatus::UpdateComplete));
    let group = logs
        .describe_log_groups()
        .log_group_name_prefix("/stack/")
        .send()
        .await?;
    assert_eq!(group.log_groups().first().and_then(|g| g.retention_in_days()), Some(14));

    cfn.delete_stack().stack_name("logs").send().await?;
    wait_until(DEADLINE, "the stack's log groups to go", || {
        let logs = logs.clone();
        let unnamed = unnamed.clone();
        async move {
            let a = logs
                .describe_log_groups()
                .log_group_name_prefix("/stack/")
                .send()
                .await
                .ok()?;
            let b = logs
                .describe_log_groups()
                .log_group_name_prefix(unnamed)
                .send()
                .await
                .ok()?;
            (a.log_groups().is_empty() && b.log_groups().is_empty()).then_some(())
        }
    })
    .await?;
    server.stop().await
}
