//! The stack lifecycle without HTTP: a real metadata store in a temp dir, and an in-memory
//! fake provisioner whose resources are entries of a map.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kd_stacks::{
    Error, ParameterInput, ProvisionError, Provisioned, Provisioner, ResourceRequest, ResourceStatus, Scope, StackDoc,
    StackInput, StackStatus, Stacks,
};
use kd_storage::{MetaStore, SystemClock};
use serde_json::{Value, json};

/// Resources of type `Test::Thing`: physical id `<Name or logical id>-<n>`; changing `Name`
/// replaces; a `Fail: true` property fails the call; `Test::Slow` never finishes creating.
#[derive(Default)]
struct Fake {
    live: Mutex<BTreeMap<String, Value>>,
    counter: Mutex<u32>,
    log: Mutex<Vec<String>>,
    /// `<op> <logical id> as <caller> via <role>` for every call.
    actors: Mutex<Vec<String>>,
}

impl Fake {
    fn live(&self) -> BTreeMap<String, Value> {
        self.live.lock().expect("lock").clone()
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().expect("lock").clone()
    }

    fn acted(&self, op: &str, r: &ResourceRequest<'_>) {
        self.actors.lock().expect("lock").push(format!(
            "{op} {} as {} via {}",
            r.logical_id,
            r.stack.caller.as_deref().unwrap_or("-"),
            r.stack.role_arn.as_deref().unwrap_or("-")
        ));
    }

    fn actors(&self) -> Vec<String> {
        self.actors.lock().expect("lock").clone()
    }
}

#[async_trait::async_trait]
impl Provisioner for Fake {
    fn requires_replacement(&self, _t: &str, old: &Value, new: &Value) -> bool {
        old.get("Name") != new.get("Name")
    }

    async fn create(&self, r: ResourceRequest<'_>) -> Result<Provisioned, ProvisionError> {
        match r.resource_type {
            "Test::Thing" => {}
            "Test::Slow" => std::future::pending::<()>().await,
            other => return Err(ProvisionError::Unsupported(other.to_owned())),
        }
        self.log.lock().expect("lock").push(format!("create {}", r.logical_id));
        self.acted("create", &r);
        if r.properties.get("Fail") == Some(&json!(true)) {
            return Err(ProvisionError::Failed(format!("{} was told to fail", r.logical_id)));
        }
        let n = {
            let mut c = self.counter.lock().expect("lock");
            *c += 1;
            *c
        };
        let base = r
            .properties
            .get("Name")
            .and_then(Value::as_str)
            .unwrap_or(r.logical_id)
            .to_owned();
        let physical = format!("{base}-{n}");
        self.live
            .lock()
            .expect("lock")
            .insert(physical.clone(), r.properties.clone());
        let mut made = Provisioned::named(
            physical.clone(),
            [("Arn".to_owned(), json!(format!("arn:test:{physical}")))],
        );
        made.no_echo = r.properties.get("Secret") == Some(&json!(true));
        Ok(made)
    }

    async fn update(
        &self,
        r: ResourceRequest<'_>,
        physical: &str,
        _old: &Value,
    ) -> Result<Provisioned, ProvisionError> {
        self.log.lock().expect("lock").push(format!("update {}", r.logical_id));
        self.acted("update", &r);
        if r.properties.get("Fail") == Some(&json!(true)) {
            return Err(ProvisionError::Failed(format!("{} was told to fail", r.logical_id)));
        }
        self.live
            .lock()
            .expect("lock")
            .insert(physical.to_owned(), r.properties.clone());
        Ok(Provisioned::named(
            physical,
            [("Arn".to_owned(), json!(format!("arn:test:{physical}")))],
        ))
    }

    fn check_role(&self, _account: &str, role_arn: &str) -> Result<(), String> {
        if role_arn.contains("untrusted") {
            Err(format!("Role {role_arn} is invalid or cannot be assumed"))
        } else {
            Ok(())
        }
    }

    async fn delete(&self, r: ResourceRequest<'_>, physical: &str) -> Result<(), ProvisionError> {
        self.log.lock().expect("lock").push(format!("delete {}", r.logical_id));
        self.acted("delete", &r);
        if r.properties.get("FailDelete") == Some(&json!(true)) {
            return Err(ProvisionError::Failed("cannot delete".into()));
        }
        self.live.lock().expect("lock").remove(physical);
        Ok(())
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    meta: Arc<MetaStore>,
    fake: Arc<Fake>,
    stacks: Arc<Stacks>,
}

fn scope() -> Scope {
    Scope {
        account: "000000000000".into(),
        region: "us-east-1".into(),
        caller: None,
    }
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = Arc::new(MetaStore::open(&dir.path().join("meta.redb")).expect("meta"));
    let fake = Arc::new(Fake::default());
    let stacks = Stacks::open(meta.clone(), Arc::new(SystemClock), fake.clone()).expect("open");
    Harness {
        _dir: dir,
        meta,
        fake,
        stacks,
    }
}

fn input(name: &str, template: &Value) -> StackInput {
    StackInput {
        stack_name: name.into(),
        template_body: Some(template.to_string()),
        ..StackInput::default()
    }
}

/// Polls until the stack's operation has ended (with a deadline).
async fn settled(stacks: &Stacks, id: &str) -> StackDoc {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let doc = stacks.stack(&scope(), id).expect("stack");
        if !doc.status.in_progress() {
            return doc;
        }
        assert!(Instant::now() < deadline, "stack still {:?}", doc.status);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn base_template() -> Value {
    json!({
        "Parameters": {"Suffix": {"Type": "String", "Default": "x"}},
        "Resources": {
            "A": {"Type": "Test::Thing", "Properties": {"Name": {"Fn::Sub": "a-${Suffix}"}}},
            "B": {"Type": "Test::Thing", "Properties": {"Peer": {"Fn::GetAtt": ["A", "Arn"]}}},
            "C": {"Type": "Test::Thing", "Properties": {"Size": 1}},
            "Kept": {"Type": "Test::Thing", "DeletionPolicy": "Retain", "Properties": {"Size": 2}}
        },
        "Outputs": {
            "PeerArn": {"Value": {"Fn::GetAtt": ["B", "Arn"]}, "Export": {"Name": "peer-arn"}},
            "AName": {"Value": {"Ref": "A"}, "Description": "A's name"}
        }
    })
}

#[tokio::test]
async fn create_completes_with_resources_events_outputs_and_exports() {
    let h = harness();
    let id = h
        .stacks
        .create_stack(&scope(), input("app", &base_template()))
        .await
        .expect("create");
    assert!(
        id.starts_with("arn:aws:cloudformation:us-east-1:000000000000:stack/app/"),
        "{id}"
    );
    let doc = settled(&h.stacks, &id).await;
    assert_eq!(doc.status, StackStatus::CreateComplete, "{:?}", doc.status_reason);
    assert_eq!(doc.resources.len(), 4);
    let a = &doc.resources["A"];
    assert_eq!(a.physical_id.as_deref().map(|p| p.starts_with("a-x-")), Some(true));
    assert_eq!(a.status, ResourceStatus::CreateComplete);
    // B was made after A, with A's attribute.
    let b_props = &doc.resources["B"].properties;
    assert_eq!(
        b_props["Peer"],
        json!(format!("arn:test:{}", a.physical_id.as_deref().unwrap_or_default()))
    );
    let outputs: BTreeMap<&str, &str> = doc.outputs.iter().map(|o| (o.key.as_str(), o.value.as_str())).collect();
    assert_eq!(outputs["AName"], a.physical_id.as_deref().unwrap_or_default());
    assert!(outputs["PeerArn"].starts_with("arn:test:B-"));
    let exports = h.stacks.exports(&scope());
    assert_eq!(exports.len(), 1);
    assert_eq!(exports[0].name, "peer-arn");
    assert_eq!(exports[0].exporting_stack_id, id);

    let events = h.stacks.events(&scope(), "app").expect("events");
    let last = &events[0];
    assert_eq!(
        (last.logical_id.as_str(), last.status.as_str()),
        ("app", "CREATE_COMPLETE")
    );
    let first = events.last().expect("first event");
    assert_eq!(first.status, "CREATE_IN_PROGRESS");
    assert_eq!(first.status_reason.as_deref(), Some("User Initiated"));
    assert_eq!(first.resource_type, "AWS::CloudFormation::Stack");
    for r in ["A", "B", "C", "Kept"] {
        let statuses: Vec<&str> = events
            .iter()
            .rev()
            .filter(|e| e.logical_id == r)
            .map(|e| e.status.as_str())
            .collect();
        assert_eq!(statuses, ["CREATE_IN_PROGRESS", "CREATE_COMPLETE"], "{r}");
    }
    // Duplicate names are refused.
    let dup = h.stacks.create_stack(&scope(), input("app", &base_template())).await;
    assert_eq!(dup, Err(Error::AlreadyExists("app".into())));
    assert_eq!(
        dup.err().map(|e| (e.code(), e.to_string())),
        Some(("AlreadyExistsException", "Stack [app] already exists".to_owned()))
    );
}

#[tokio::test]
async fn a_failed_resource_rolls_the_creation_back() {
    let h = harness();
    let t = json!({"Resources": {
        "A": {"Type": "Test::Thing"},
        "Kept": {"Type": "Test::Thing", "DeletionPolicy": "Retain"},
        "B": {"Type": "Test::Thing", "DependsOn": ["A", "Kept"], "Properties": {"Fail": true}}
    }});
    let id = h.stacks.create_stack(&scope(), input("bad", &t)).await.expect("create");
    let doc = settled(&h.stacks, &id).await;
    assert_eq!(doc.status, StackStatus::RollbackComplete);
    let events = h.stacks.events(&scope(), &id).expect("events");
    let b_failed = events
        .iter()
        .find(|e| e.logical_id == "B" && e.status == "CREATE_FAILED")
        .expect("B failed");
    assert_eq!(b_failed.status_reason.as_deref(), Some("B was told to fail"));
    let rollback = events
        .iter()
        .find(|e| e.logical_id == "bad" && e.status == "ROLLBACK_IN_PROGRESS")
        .expect("rollback event");
    assert_eq!(
        rollback.status_reason.as_deref(),
        Some("The following resource(s) failed to create: [B]. Rollback requested by user.")
    );
    assert!(
        events
            .iter()
            .any(|e| e.logical_id == "Kept" && e.status == "DELETE_SKIPPED")
    );
    // A is gone, Kept (Retain) stays.
    let live = h.fake.live();
    assert_eq!(live.len(), 1, "{live:?}");
    assert!(live.keys().all(|k| k.starts_with("Kept-")));
    // ROLLBACK_COMPLETE stacks can only be deleted.
    let upd = h
        .stacks
        .update_stack(
            &scope(),
            input("bad", &json!({"Resources": {"X": {"Type": "Test::Thing"}}})),
        )
        .await;
    assert!(
        matches!(&upd, Err(Error::Validation(m)) if m.ends_with("is in ROLLBACK_COMPLETE state and can not be updated.")),
        "{upd:?}"
    );
    h.stacks.delete_stack(&scope(), "bad").await.expect("delete");
    assert_eq!(settled(&h.stacks, &id).await.status, StackStatus::DeleteComplete);
}

#[tokio::test]
async fn disable_rollback_leaves_create_failed_and_unsupported_types_are_refused() {
    let h = harness();
    let t = json!({"Resources": {
        "A": {"Type": "Test::Thing"},
        "Q": {"Type": "AWS::SQS::Queue", "DependsOn": "A"}
    }});
    let mut i = input("keep", &t);
    i.disable_rollback = true;
    let id = h.stacks.create_stack(&scope(), i).await.expect("create");
    let doc = settled(&h.stacks, &id).await;
    assert_eq!(doc.status, StackStatus::CreateFailed);
    assert_eq!(
        doc.status_reason.as_deref(),
        Some("The following resource(s) failed to create: [Q]. ")
    );
    assert_eq!(
        doc.resources["Q"].status_reason.as_deref(),
        Some("Resource type AWS::SQS::Queue is not supported by kinesis-data")
    );
    assert_eq!(h.fake.live().len(), 1, "A stays when rollback is disabled");
}

#[tokio::test]
async fn update_skips_unchanged_updates_replaces_adds_and_removes() {
    let h = harness();
    let mut t = base_template();
    t["Resources"]["Gone"] = json!({"Type": "Test::Thing", "Properties": {"Size": 9}});
    let id = h.stacks.create_stack(&scope(), input("app", &t)).await.expect("create");
    let before = settled(&h.stacks, &id).await;
    assert_eq!(before.status, StackStatus::CreateComplete);
    let old_a = before.resources["A"].physical_id.clone().expect("A");
    let old_b = before.resources["B"].physical_id.clone().expect("B");

    // Same template, same parameters: nothing to do.
    let same = h.stacks.update_stack(&scope(), input("app", &t)).await;
    assert_eq!(same, Err(Error::Validation("No updates are to be performed.".into())));

    // A new Suffix renames A (replacement), which changes B's Peer (in-place update); C is
    // untouched; Gone is removed; New is added.
    let mut t2 = base_template();
    t2["Resources"]["New"] = json!({"Type": "Test::Thing", "Properties": {"Size": 3}});
    let mut i = input("app", &t2);
    i.parameters = vec![ParameterInput {
        key: "Suffix".into(),
        value: Some("y".into()),
        use_previous_value: false,
    }];
    let log_before = h.fake.log().len();
    h.stacks.update_stack(&scope(), i).await.expect("update");
    let after = settled(&h.stacks, &id).await;
    assert_eq!(after.status, StackStatus::UpdateComplete, "{:?}", after.status_reason);
    let new_a = after.resources["A"].physical_id.clone().expect("A");
    assert!(new_a.starts_with("a-y-"), "{new_a}");
    assert_eq!(after.resources["B"].physical_id.as_deref(), Some(old_b.as_str()));
    assert_eq!(
        after.resources["B"].properties["Peer"],
        json!(format!("arn:test:{new_a}"))
    );
    assert!(!after.resources.contains_key("Gone"));
    assert!(after.resources.contains_key("New"));
    let live = h.fake.live();
    assert!(!live.contains_key(&old_a), "old A deleted after the replacement");
    assert!(live.contains_key(&new_a));
    let calls: BTreeSet<String> = h.fake.log()[log_before..].iter().cloned().collect();
    assert_eq!(
        calls,
        ["create A", "update B", "create New", "delete A", "delete Gone"]
            .into_iter()
            .map(String::from)
            .collect(),
        "C and Kept are untouched"
    );
    let events = h.stacks.events(&scope(), "app").expect("events");
    assert!(
        !events
            .iter()
            .take_while(|e| e.status != "UPDATE_IN_PROGRESS" || e.logical_id != "app")
            .any(|e| e.logical_id == "C")
    );
    let replace = events
        .iter()
        .find(|e| e.logical_id == "A" && e.status == "UPDATE_IN_PROGRESS")
        .expect("A update event");
    assert_eq!(
        replace.status_reason.as_deref(),
        Some("Requested update requires the creation of a new physical resource; hence creating one.")
    );
    let stack_statuses: Vec<&str> = events
        .iter()
        .rev()
        .filter(|e| e.logical_id == "app")
        .map(|e| e.status.as_str())
        .collect();
    assert_eq!(
        stack_statuses,
        [
            "CREATE_IN_PROGRESS",
            "CREATE_COMPLETE",
            "UPDATE_IN_PROGRESS",
            "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
            "UPDATE_COMPLETE"
        ]
    );
    assert_eq!(
        after
            .parameters
            .iter()
            .find(|p| p.key == "Suffix")
            .map(|p| p.value.as_str()),
        Some("y")
    );
}

#[tokio::test]
async fn a_failed_update_rolls_back_to_the_old_resources() {
    let h = harness();
    let id = h
        .stacks
        .create_stack(&scope(), input("app", &base_template()))
        .await
        .expect("create");
    let before = settled(&h.stacks, &id).await;
    let mut t2 = base_template();
    t2["Resources"]["C"]["Properties"]["Size"] = json!(5);
    t2["Resources"]["Broken"] = json!({"Type": "Test::Thing", "DependsOn": "C", "Properties": {"Fail": true}});
    h.stacks
        .update_stack(&scope(), input("app", &t2))
        .await
        .expect("update");
    let after = settled(&h.stacks, &id).await;
    assert_eq!(after.status, StackStatus::UpdateRollbackComplete);
    assert_eq!(after.resources["C"].properties, json!({"Size": 1}));
    assert!(!after.resources.contains_key("Broken"));
    assert_eq!(after.template_body, before.template_body);
    let c = after.resources["C"].physical_id.clone().expect("C");
    assert_eq!(h.fake.live()[&c], json!({"Size": 1}), "C updated back");
    let events = h.stacks.events(&scope(), &id).expect("events");
    let reason = events
        .iter()
        .find(|e| e.logical_id == "app" && e.status == "UPDATE_ROLLBACK_IN_PROGRESS")
        .and_then(|e| e.status_reason.clone());
    assert_eq!(
        reason.as_deref(),
        Some("The following resource(s) failed to create: [Broken]. ")
    );
}

#[tokio::test]
async fn delete_honours_retain_and_deleted_stacks_are_found_by_id_only() {
    let h = harness();
    let id = h
        .stacks
        .create_stack(&scope(), input("app", &base_template()))
        .await
        .expect("create");
    let doc = settled(&h.stacks, &id).await;
    let kept = doc.resources["Kept"].physical_id.clone().expect("Kept");
    h.stacks.delete_stack(&scope(), "app").await.expect("delete");
    let gone = settled(&h.stacks, &id).await;
    assert_eq!(gone.status, StackStatus::DeleteComplete);
    assert!(gone.deleted_ms.is_some());
    let live = h.fake.live();
    assert_eq!(
        live.keys().cloned().collect::<Vec<_>>(),
        vec![kept],
        "only the retained resource is left"
    );
    let events = h.stacks.events(&scope(), &id).expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.logical_id == "Kept" && e.status == "DELETE_SKIPPED")
    );
    let by_name = h.stacks.stack(&scope(), "app");
    assert_eq!(by_name.clone().err(), Some(Error::StackNotFound("app".into())));
    assert_eq!(
        by_name.err().map(|e| e.to_string()),
        Some("Stack with id app does not exist".to_owned())
    );
    assert!(h.stacks.exports(&scope()).is_empty());
    // Deleting again, or a stack that never existed, succeeds.
    h.stacks.delete_stack(&scope(), "app").await.expect("again");
    h.stacks.delete_stack(&scope(), "never").await.expect("never");
    // The name is free again.
    let id2 = h
        .stacks
        .create_stack(&scope(), input("app", &base_template()))
        .await
        .expect("create again");
    assert_ne!(id, id2);
    assert_eq!(settled(&h.stacks, &id2).await.status, StackStatus::CreateComplete);
}

#[tokio::test]
async fn an_imported_export_cannot_be_deleted() {
    let h = harness();
    let p = h
        .stacks
        .create_stack(&scope(), input("producer", &base_template()))
        .await
        .expect("producer");
    settled(&h.stacks, &p).await;
    let consumer =
        json!({"Resources": {"U": {"Type": "Test::Thing", "Properties": {"Uses": {"Fn::ImportValue": "peer-arn"}}}}});
    let c = h
        .stacks
        .create_stack(&scope(), input("consumer", &consumer))
        .await
        .expect("consumer");
    let cdoc = settled(&h.stacks, &c).await;
    assert_eq!(cdoc.status, StackStatus::CreateComplete);
    assert!(
        cdoc.resources["U"].properties["Uses"]
            .as_str()
            .is_some_and(|v| v.starts_with("arn:test:B-"))
    );
    h.stacks
        .delete_stack(&scope(), "producer")
        .await
        .expect("delete starts");
    let pdoc = settled(&h.stacks, &p).await;
    assert_eq!(pdoc.status, StackStatus::DeleteFailed);
    assert_eq!(
        pdoc.status_reason.as_deref(),
        Some("Export peer-arn cannot be deleted as it is in use by consumer")
    );
    // A missing export is refused up front.
    let orphan =
        json!({"Resources": {"U": {"Type": "Test::Thing", "Properties": {"Uses": {"Fn::ImportValue": "nope"}}}}});
    let e = h.stacks.create_stack(&scope(), input("orphan", &orphan)).await;
    assert_eq!(e, Err(Error::Validation("No export named nope found.".into())));
}

#[tokio::test]
async fn a_restart_marks_interrupted_stacks_failed() {
    let h = harness();
    let t = json!({"Resources": {"A": {"Type": "Test::Thing"}, "S": {"Type": "Test::Slow", "DependsOn": "A"}}});
    let id = h
        .stacks
        .create_stack(&scope(), input("stuck", &t))
        .await
        .expect("create");
    let deadline = Instant::now() + Duration::from_secs(10);
    while h
        .stacks
        .stack(&scope(), &id)
        .expect("stack")
        .resources
        .get("S")
        .map(|r| r.status)
        != Some(ResourceStatus::CreateInProgress)
    {
        assert!(Instant::now() < deadline, "S never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A new engine over the same store: what a restart finds.
    let reopened = Stacks::open(h.meta.clone(), Arc::new(SystemClock), h.fake.clone()).expect("reopen");
    let doc = reopened.stack(&scope(), &id).expect("stack");
    assert_eq!(doc.status, StackStatus::CreateFailed);
    assert_eq!(doc.status_reason.as_deref(), Some("Stack was interrupted by a restart"));
    assert_eq!(doc.resources["S"].status, ResourceStatus::CreateFailed);
    assert_eq!(doc.resources["A"].status, ResourceStatus::CreateComplete);
    let events = reopened.events(&scope(), &id).expect("events");
    assert_eq!(events[0].status, "CREATE_FAILED");
    assert_eq!(events[0].logical_id, "stuck");
    // It can be deleted: A (recorded as made) is deleted, S (never made) just forgotten.
    reopened.delete_stack(&scope(), &id).await.expect("delete");
    assert_eq!(settled(&reopened, &id).await.status, StackStatus::DeleteComplete);
    assert!(h.fake.live().is_empty());
}

#[tokio::test]
async fn change_sets_create_review_then_execute() {
    let h = harness();
    let (cs_id, stack_id) = h
        .stacks
        .create_change_set(&scope(), input("cs", &base_template()), "first", "CREATE", None)
        .await
        .expect("change set");
    assert!(cs_id.contains(":changeSet/first/"), "{cs_id}");
    let doc = h.stacks.stack(&scope(), "cs").expect("stack");
    assert_eq!(doc.status, StackStatus::ReviewInProgress);
    let cs = h.stacks.change_set(&scope(), "first", Some("cs")).expect("describe");
    assert_eq!(
        (cs.status.as_str(), cs.execution_status.as_str()),
        ("CREATE_COMPLETE", "AVAILABLE")
    );
    assert_eq!(cs.changes.len(), 4);
    assert!(cs.changes.iter().all(|c| c.action == "Add"));
    h.stacks
        .execute_change_set(&scope(), &cs_id, None)
        .await
        .expect("execute");
    assert_eq!(settled(&h.stacks, &stack_id).await.status, StackStatus::CreateComplete);
    let done = h.stacks.change_set(&scope(), &cs_id, None).expect("describe");
    assert_eq!(done.execution_status, "EXECUTE_COMPLETE");
    let again = h.stacks.execute_change_set(&scope(), &cs_id, None).await;
    assert!(matches!(again, Err(Error::InvalidChangeSetStatus(_))), "{again:?}");

    // An UPDATE change set without changes fails the way `aws cloudformation deploy` expects.
    let (same, _) = h
        .stacks
        .create_change_set(&scope(), input("cs", &base_template()), "same", "UPDATE", None)
        .await
        .expect("change set");
    let same = h.stacks.change_set(&scope(), &same, None).expect("describe");
    assert_eq!(same.status, "FAILED");
    assert_eq!(same.status_reason.as_deref(), Some(kd_stacks::lifecycle::NO_CHANGES));

    // One with a change lists it, with the replacement the provider predicts.
    let mut t2 = base_template();
    t2["Resources"]["C"]["Properties"]["Size"] = json!(7);
    t2["Resources"]["A"]["Properties"]["Name"] = json!("renamed");
    let (upd, _) = h
        .stacks
        .create_change_set(&scope(), input("cs", &t2), "second", "UPDATE", None)
        .await
        .expect("change set");
    let upd = h.stacks.change_set(&scope(), &upd, None).expect("describe");
    let changes: BTreeMap<&str, (&str, Option<&str>)> = upd
        .changes
        .iter()
        .map(|c| (c.logical_id.as_str(), (c.action.as_str(), c.replacement.as_deref())))
        .collect();
    assert_eq!(changes["A"], ("Modify", Some("True")));
    assert_eq!(changes["C"], ("Modify", Some("False")));
    // B's properties follow A's new Arn: known only when the change set runs.
    assert_eq!(changes["B"], ("Modify", Some("Conditional")));
    assert!(!changes.contains_key("Kept"));
    h.stacks
        .execute_change_set(&scope(), &upd.id, None)
        .await
        .expect("execute");
    let after = settled(&h.stacks, &stack_id).await;
    assert_eq!(after.status, StackStatus::UpdateComplete);
    assert_eq!(after.change_set_id.as_deref(), Some(upd.id.as_str()));
    assert_eq!(
        h.stacks
            .change_set(&scope(), "same", Some("cs"))
            .expect("other")
            .execution_status,
        "OBSOLETE"
    );
}

#[tokio::test]
async fn validation_happens_before_anything_is_recorded() {
    let h = harness();
    let bad = h
        .stacks
        .create_stack(
            &scope(),
            StackInput {
                stack_name: "x".into(),
                template_body: Some("{\"Resources\": {}}".into()),
                ..StackInput::default()
            },
        )
        .await;
    assert_eq!(
        bad,
        Err(Error::Validation(
            "Template format error: At least one Resources member must be defined.".into()
        ))
    );
    let params = json!({"Parameters": {"Need": {"Type": "String"}}, "Resources": {"A": {"Type": "Test::Thing"}}});
    let missing = h.stacks.create_stack(&scope(), input("p", &params)).await;
    assert_eq!(
        missing,
        Err(Error::Validation("Parameters: [Need] must have values".into()))
    );
    let iam = json!({"Resources": {"R": {"Type": "AWS::IAM::Role", "Properties": {}}}});
    let caps = h.stacks.create_stack(&scope(), input("r", &iam)).await;
    assert_eq!(caps, Err(Error::InsufficientCapabilities("CAPABILITY_IAM".into())));
    let name = h.stacks.create_stack(&scope(), input("1bad", &params)).await;
    assert!(matches!(name, Err(Error::Validation(m)) if m.contains("stackName")));
    assert!(h.stacks.all_stacks(&scope()).is_empty());
}

fn as_caller(key: &str) -> Scope {
    Scope {
        caller: Some(key.to_owned()),
        ..scope()
    }
}

#[tokio::test]
async fn operations_act_as_their_caller_or_the_stack_role_which_is_kept() {
    let h = harness();
    let t = json!({"Resources": {"A": {"Type": "Test::Thing", "Properties": {"Size": 1}}}});
    let role = "arn:aws:iam::000000000000:role/deployer";

    // A role that cannot be assumed is refused before anything starts.
    let mut refused = input("app", &t);
    refused.role_arn = Some("arn:aws:iam::000000000000:role/untrusted".into());
    match h.stacks.create_stack(&as_caller("AKIAUSER1"), refused).await {
        Err(Error::Validation(m)) => {
            assert_eq!(
                m,
                "Role arn:aws:iam::000000000000:role/untrusted is invalid or cannot be assumed"
            );
        }
        other => panic!("expected a ValidationError, got {other:?}"),
    }
    assert!(h.stacks.stack(&scope(), "app").is_err());

    // Without a role: the caller.
    let id = h
        .stacks
        .create_stack(&as_caller("AKIAUSER1"), input("app", &t))
        .await
        .expect("create");
    assert_eq!(settled(&h.stacks, &id).await.status, StackStatus::CreateComplete);
    // An update with a role: the role, which the stack keeps.
    let mut with_role = input(
        "app",
        &json!({"Resources": {"A": {"Type": "Test::Thing", "Properties": {"Size": 2}}}}),
    );
    with_role.role_arn = Some(role.into());
    h.stacks
        .update_stack(&as_caller("AKIAUSER2"), with_role)
        .await
        .expect("update");
    let doc = settled(&h.stacks, &id).await;
    assert_eq!(doc.status, StackStatus::UpdateComplete);
    assert_eq!(doc.role_arn.as_deref(), Some(role));
    // A later delete by someone else still goes through the kept role.
    h.stacks
        .delete_stack(&as_caller("AKIAUSER3"), "app")
        .await
        .expect("delete");
    assert_eq!(settled(&h.stacks, &id).await.status, StackStatus::DeleteComplete);
    assert_eq!(
        h.fake.actors(),
        vec![
            "create A as AKIAUSER1 via -".to_owned(),
            format!("update A as AKIAUSER2 via {role}"),
            format!("delete A as AKIAUSER3 via {role}"),
        ]
    );
}

#[tokio::test]
async fn no_echo_attributes_are_masked_in_outputs() {
    let h = harness();
    let t = json!({
        "Resources": {
            "S": {"Type": "Test::Thing", "Properties": {"Secret": true}},
            "P": {"Type": "Test::Thing", "Properties": {"Peer": {"Fn::GetAtt": ["S", "Arn"]}}}
        },
        "Outputs": {
            "SecretArn": {"Value": {"Fn::GetAtt": ["S", "Arn"]}},
            "SecretRef": {"Value": {"Ref": "S"}}
        }
    });
    let id = h.stacks.create_stack(&scope(), input("app", &t)).await.expect("create");
    let doc = settled(&h.stacks, &id).await;
    assert_eq!(doc.status, StackStatus::CreateComplete);
    let out = |k: &str| doc.outputs.iter().find(|o| o.key == k).map(|o| o.value.clone());
    assert_eq!(out("SecretArn").as_deref(), Some("*****"));
    assert!(out("SecretRef").is_some_and(|v| v.starts_with("S-")));
    // Resources still get the real value.
    let peer = h.fake.live().values().find_map(|p| p.get("Peer").cloned());
    assert!(peer.is_some_and(|p| p.as_str().is_some_and(|a| a.starts_with("arn:test:S-"))));
}
