//! Engine tests of the Glue Data Catalog (no HTTP): the catalog opened over a real metadata
//! store in a temporary directory, driven through its public API, and reopened to check what
//! is durable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kd_catalog::{
    Catalog, Column, DatabaseInput, Error, PartitionInput, Scope, SerDeInfo, StorageDescriptor, TableInput,
};
use kd_storage::{ManualClock, MetaStore};

type R = Result<(), Box<dyn std::error::Error>>;

fn scope() -> Scope {
    Scope {
        account: "123456789012".into(),
        region: "us-east-1".into(),
    }
}

fn meta_path(dir: &Path) -> PathBuf {
    dir.join("meta.redb")
}

fn open(dir: &Path, clock: Arc<ManualClock>) -> Result<Arc<Catalog>, Box<dyn std::error::Error>> {
    let meta = Arc::new(MetaStore::open(&meta_path(dir))?);
    Ok(Catalog::open(meta, clock)?)
}

fn db(name: &str) -> DatabaseInput {
    DatabaseInput {
        name: name.into(),
        ..DatabaseInput::default()
    }
}

fn col(name: &str, t: &str) -> Column {
    Column {
        name: name.into(),
        r#type: Some(t.into()),
        ..Column::default()
    }
}

fn table(name: &str, keys: &[(&str, &str)]) -> TableInput {
    TableInput {
        name: name.into(),
        table_type: Some("EXTERNAL_TABLE".into()),
        storage_descriptor: Some(StorageDescriptor {
            columns: Some(vec![col("id", "bigint"), col("body", "string")]),
            location: Some(format!("s3://lake/{name}/")),
            serde_info: Some(SerDeInfo {
                serialization_library: Some("org.openx.data.jsonserde.JsonSerDe".into()),
                ..SerDeInfo::default()
            }),
            ..StorageDescriptor::default()
        }),
        partition_keys: Some(keys.iter().map(|(n, t)| col(n, t)).collect()),
        ..TableInput::default()
    }
}

fn part(values: &[&str]) -> PartitionInput {
    PartitionInput {
        values: values.iter().map(|v| v.to_string()).collect(),
        storage_descriptor: Some(StorageDescriptor {
            location: Some(format!("s3://lake/p/{}/", values.join("/"))),
            ..StorageDescriptor::default()
        }),
        ..PartitionInput::default()
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Every page of GetPartitions for `expression`, `max` per page.
fn all_pages(
    c: &Catalog,
    db: &str,
    t: &str,
    expression: Option<&str>,
    max: usize,
) -> Result<(Vec<Vec<String>>, Vec<usize>), Error> {
    let mut token: Option<String> = None;
    let mut values = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let p = c.get_partitions(&scope(), db, t, expression, token.as_deref(), Some(max))?;
        sizes.push(p.items.len());
        values.extend(p.items.into_iter().map(|p| p.input.values));
        token = p.next_token;
        if token.is_none() {
            return Ok((values, sizes));
        }
    }
}

fn matching(c: &Catalog, t: &str, expression: &str) -> Result<Vec<Vec<String>>, Error> {
    Ok(c.get_partitions(&scope(), "lake", t, Some(expression), None, None)?
        .items
        .into_iter()
        .map(|p| p.input.values)
        .collect())
}

fn pair(a: &str, b: &str) -> Vec<String> {
    vec![a.to_string(), b.to_string()]
}

// ---------------------------------------------------------------------------- databases

#[tokio::test]
async fn database_names_are_lower_cased_and_errors_carry_glue_messages() -> R {
    let dir = tempfile::tempdir()?;
    let c = open(dir.path(), Arc::new(ManualClock::new(1_700_000_000_000)))?;
    let s = scope();
    c.create_database(
        &s,
        DatabaseInput {
            name: "Sales".into(),
            description: Some("sales data".into()),
            location_uri: Some("s3://lake/sales/".into()),
            parameters: Some([("owner".to_string(), "ops".to_string())].into()),
            ..DatabaseInput::default()
        },
    )
    .await?;
    let got = c.get_database(&s, "SALES")?;
    assert_eq!(got.input.name, "sales");
    assert_eq!(got.input.description.as_deref(), Some("sales data"));
    assert_eq!(got.input.location_uri.as_deref(), Some("s3://lake/sales/"));
    assert_eq!(
        got.input
            .parameters
            .as_ref()
            .and_then(|p| p.get("owner"))
            .map(String::as_str),
        Some("ops")
    );
    assert_eq!(got.create_time_ms, 1_700_000_000_000);
    assert_eq!(got.catalog_id, "123456789012");

    match c.create_database(&s, db("sAlEs")).await {
        Err(e @ Error::AlreadyExists(_)) => {
            assert_eq!(e.to_string(), "Database already exists.");
            assert_eq!(e.code(), "AlreadyExistsException");
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    match c.get_database(&s, "Nope") {
        Err(e @ Error::EntityNotFound(_)) => {
            assert_eq!(e.to_string(), "Database nope not found.");
            assert_eq!(e.code(), "EntityNotFoundException");
        }
        other => panic!("expected EntityNotFound, got {other:?}"),
    }
    match c.create_database(&s, db("")).await {
        Err(e @ Error::InvalidInput(_)) => {
            assert!(
                e.to_string().contains("Member must have length between 1 and 255"),
                "{e}"
            );
            assert_eq!(e.code(), "InvalidInputException");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert!(matches!(
        c.create_database(&s, db(&"x".repeat(256))).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        c.create_database(&s, db("two\nlines")).await,
        Err(Error::InvalidInput(m)) if m.contains("regular expression pattern")
    ));
    c.create_database(&s, db(&"x".repeat(255))).await?;

    // Another region, another account: other catalogs.
    let eu = Scope {
        region: "eu-west-1".into(),
        ..s.clone()
    };
    let other = Scope {
        account: "210987654321".into(),
        ..s.clone()
    };
    assert!(matches!(c.get_database(&eu, "sales"), Err(Error::EntityNotFound(_))));
    assert!(matches!(c.get_database(&other, "sales"), Err(Error::EntityNotFound(_))));
    c.create_database(&eu, db("sales")).await?;
    assert_eq!(c.get_databases(&eu, None, None)?.items.len(), 1);
    assert_eq!(c.get_databases(&other, None, None)?.items.len(), 0);
    Ok(())
}

#[tokio::test]
async fn update_database_replaces_the_definition_but_not_the_name() -> R {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(1_000));
    let c = open(dir.path(), clock.clone())?;
    let s = scope();
    c.create_database(
        &s,
        DatabaseInput {
            name: "d".into(),
            description: Some("one".into()),
            location_uri: Some("s3://a/".into()),
            ..DatabaseInput::default()
        },
    )
    .await?;
    clock.advance(5_000);
    c.update_database(
        &s,
        "D",
        DatabaseInput {
            name: "renamed".into(),
            description: Some("two".into()),
            ..DatabaseInput::default()
        },
    )
    .await?;
    let got = c.get_database(&s, "d")?;
    assert_eq!(got.input.name, "d", "UpdateDatabase cannot rename");
    assert_eq!(got.input.description.as_deref(), Some("two"));
    assert_eq!(got.input.location_uri, None, "the input replaces the definition");
    assert_eq!(got.create_time_ms, 1_000, "creation time is kept");
    assert!(matches!(c.get_database(&s, "renamed"), Err(Error::EntityNotFound(_))));
    match c.update_database(&s, "missing", db("missing")).await {
        Err(Error::EntityNotFound(m)) => assert_eq!(m, "Database missing not found."),
        other => panic!("expected EntityNotFound, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn get_databases_pages_in_name_order() -> R {
    let dir = tempfile::tempdir()?;
    let c = open(dir.path(), Arc::new(ManualClock::new(0)))?;
    let s = scope();
    for n in ["e", "B", "a", "d", "c"] {
        c.create_database(&s, db(n)).await?;
    }
    let p1 = c.get_databases(&s, None, Some(2))?;
    let names =
        |p: &kd_catalog::Page<kd_catalog::Database>| p.items.iter().map(|d| d.input.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&p1), strs(&["a", "b"]));
    let p2 = c.get_databases(&s, p1.next_token.as_deref(), Some(2))?;
    assert_eq!(names(&p2), strs(&["c", "d"]));
    let p3 = c.get_databases(&s, p2.next_token.as_deref(), Some(2))?;
    assert_eq!(names(&p3), strs(&["e"]));
    assert_eq!(p3.next_token, None);
    // MaxResults is clamped to 1..=100.
    assert_eq!(c.get_databases(&s, None, Some(0))?.items.len(), 1);
    assert_eq!(c.get_databases(&s, None, Some(10_000))?.items.len(), 5);
    // An exact fit has no next page.
    assert_eq!(c.get_databases(&s, None, Some(5))?.next_token, None);
    match c.get_databases(&s, Some("not base64!"), None) {
        Err(Error::InvalidInput(m)) => assert_eq!(m, "Invalid NextToken"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    // An empty token is the first page.
    assert_eq!(names(&c.get_databases(&s, Some(""), Some(1))?), strs(&["a"]));
    Ok(())
}

#[tokio::test]
async fn delete_database_cascades_to_tables_versions_and_partitions() -> R {
    let dir = tempfile::tempdir()?;
    let s = scope();
    {
        let c = open(dir.path(), Arc::new(ManualClock::new(0)))?;
        c.create_database(&s, db("lake")).await?;
        c.create_database(&s, db("keep")).await?;
        c.create_table(&s, "lake", table("events", &[("dt", "string")])).await?;
        c.create_table(&s, "keep", table("events", &[("dt", "string")])).await?;
        let mut v1 = table("events", &[("dt", "string")]);
        v1.description = Some("v1".into());
        c.update_table(&s, "lake", v1, false, None).await?;
        assert!(
            c.batch_create_partition(&s, "lake", "events", vec![part(&["a"]), part(&["b"])])
                .await?
                .is_empty()
        );
        assert!(
            c.batch_create_partition(&s, "keep", "events", vec![part(&["k"])])
                .await?
                .is_empty()
        );
        c.delete_database(&s, "LAKE").await?;
        assert!(matches!(c.get_database(&s, "lake"), Err(Error::EntityNotFound(_))));
        match c.get_table(&s, "lake", "events") {
            Err(Error::EntityNotFound(m)) => assert_eq!(m, "Database lake not found."),
            other => panic!("expected EntityNotFound, got {other:?}"),
        }
        match c.delete_database(&s, "lake").await {
            Err(Error::EntityNotFound(m)) => assert_eq!(m, "Database lake not found."),
            other => panic!("expected EntityNotFound, got {other:?}"),
        }
        // A database of the same name starts empty.
        c.create_database(&s, db("lake")).await?;
        c.create_table(&s, "lake", table("events", &[("dt", "string")])).await?;
        assert!(c.all_partitions(&s, "lake", "events")?.is_empty());
    }
    // After reopening, nothing of the deleted database comes back into the new one.
    let c = open(dir.path(), Arc::new(ManualClock::new(0)))?;
    assert!(c.all_partitions(&s, "lake", "events")?.is_empty());
    let versions = c.get_table_versions(&s, "lake", "events", None, None)?;
    assert_eq!(
        versions.items.iter().map(|v| v.version_id.as_str()).collect::<Vec<_>>(),
        vec!["0"]
    );
    assert_eq!(c.get_table(&s, "lake", "events")?.input.description, None);
    // The other database was not touched.
    assert_eq!(
        c.all_partitions(&s, "keep", "events")?
            .into_iter()
            .map(|p| p.input.values)
            .collect::<Vec<_>>(),
        vec![strs(&["k"])]
    );
    Ok(())
}

// ---------------------------------------------------------------------------- tables

#[tokio::test]
async fn tables_are_lower_cased_and_missing_ones_are_named() -> R {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(10_000));
    let c = open(dir.path(), clock.clone())?;
    let s = scope();
    c.create_database(&s, db("lake")).await?;
    c.create_table(&s, "LAKE", table("Orders", &[("Year", "int")])).await?;
    let t = c.get_table(&s, "lake", "ORDERS")?;
    assert_eq!(t.input.name, "orders");
    assert_eq!(t.database, "lake");
    assert_eq!(t.version_id, "0");
    assert_eq!((t.create_time_ms, t.update_time_ms), (10_000, 10_000));
    assert_eq!(t.catalog_id, "123456789012");
    assert_eq!(t.input.columns().len(), 2);
    assert_eq!(
        t.input.partition_keys()[0].name,
        "Year",
        "column names are kept as given"
    );
    assert_eq!(t.input.table_type.as_deref(), Some("EXTERNAL_TABLE"));
    match c.create_table(&s, "lake", table("ORDERS", &[])).await {
        Err(e @ Error::AlreadyExists(_)) => assert_eq!(e.to_string(), "Table already exists."),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    match c.create_table(&s, "nope", table("x", &[])).await {
        Err(Error::EntityNotFound(m)) => assert_eq!(m, "Database nope not found."),
        other => panic!("expected EntityNotFound, got {other:?}"),
    }
    match c.get_table(&s, "lake", "Missing") {
        Err(e @ Error::EntityNotFound(_)) => assert_eq!(e.to_string(), "Table missing not found."),
        other => panic!("expected EntityNotFound, got {other:?}"),
    }
    match c.delete_table(&s, "lake", "missing").await {
        Err(Error::EntityNotFound(m)) => assert_eq!(m, "Table missing not found."),
        other => panic!("expected EntityNotFound, got {other:?}"),
    }
    assert!(matches!(
        c.create_table(&s, "lake", table("", &[])).await,
        Err(Error::InvalidInput(_))
    ));

    // BatchDeleteTable: per-name errors (a repeated name is not found the second time).
    c.create_table(&s, "lake", table("b", &[])).await?;
    let errors = c
        .batch_delete_table(&s, "lake", &strs(&["ORDERS", "orders", "nope", "b"]))
        .await?;
    assert_eq!(
        errors
            .iter()
            .map(|(n, e)| (n.as_str(), e.to_string()))
            .collect::<Vec<_>>(),
        vec![
            ("orders", "Table orders not found.".to_string()),
            ("nope", "Table nope not found.".to_string())
        ]
    );
    assert!(c.get_tables(&s, "lake", None, None, None)?.items.is_empty());
    Ok(())
}

#[tokio::test]
async fn update_table_archives_versions_unless_skip_archive() -> R {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(1_000));
    let s = scope();
    {
        let c = open(dir.path(), clock.clone())?;
        c.create_database(&s, db("lake")).await?;
        c.create_table(&s, "lake", table("t", &[])).await?;
        let with = |d: &str| {
            let mut t = table("T", &[]);
            t.description = Some(d.into());
            t
        };
        clock.set(2_000);
        c.update_table(&s, "lake", with("one"), false, Some("0")).await?;
        clock.set(3_000);
        c.update_table(&s, "LAKE", with("two"), true, None).await?;
        clock.set(4_000);
        c.update_table(&s, "lake", with("three"), false, Some("2")).await?;
        match c.update_table(&s, "lake", with("stale"), false, Some("1")).await {
            Err(e @ Error::ConcurrentModification(_)) => {
                assert_eq!(
                    e.to_string(),
                    "Update table failed due to concurrent modifications. Table version 1 is not the current version 3."
                );
                assert_eq!(e.code(), "ConcurrentModificationException");
            }
            other => panic!("expected ConcurrentModification, got {other:?}"),
        }
        match c.update_table(&s, "lake", table("ghost", &[]), false, None).await {
            Err(Error::EntityNotFound(m)) => assert_eq!(m, "Table ghost not found."),
            other => panic!("expected EntityNotFound, got {other:?}"),
        }
        let t = c.get_table(&s, "lake", "t")?;
        assert_eq!(t.version_id, "3");
        assert_eq!(t.input.description.as_deref(), Some("three"));
        assert_eq!((t.create_time_ms, t.update_time_ms), (1_000, 4_000));
    }
    // Versions (and their contents) are durable.
    let c = open(dir.path(), clock)?;
    let all = c.get_table_versions(&s, "lake", "t", None, None)?;
    let seen: Vec<(String, Option<String>)> = all
        .items
        .iter()
        .map(|v| (v.version_id.clone(), v.table.input.description.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("3".to_string(), Some("three".to_string())),
            ("2".to_string(), Some("two".to_string())),
            ("0".to_string(), None),
        ],
        "version 1 was replaced with SkipArchive"
    );
    assert_eq!(all.next_token, None);
    let p1 = c.get_table_versions(&s, "lake", "t", None, Some(2))?;
    assert_eq!(
        p1.items.iter().map(|v| v.version_id.as_str()).collect::<Vec<_>>(),
        vec!["3", "2"]
    );
    let p2 = c.get_table_versions(&s, "lake", "t", p1.next_token.as_deref(), Some(2))?;
    assert_eq!(
        p2.items.iter().map(|v| v.version_id.as_str()).collect::<Vec<_>>(),
        vec!["0"]
    );
    assert_eq!(p2.next_token, None);
    // Deleting the table deletes its versions: a new table of that name has only "0".
    c.delete_table(&s, "lake", "t").await?;
    c.create_table(&s, "lake", table("t", &[])).await?;
    drop(c);
    let c = open(dir.path(), Arc::new(ManualClock::new(0)))?;
    let v = c.get_table_versions(&s, "lake", "t", None, None)?;
    assert_eq!(
        v.items.iter().map(|v| v.version_id.as_str()).collect::<Vec<_>>(),
        vec!["0"]
    );
    Ok(())
}

#[tokio::test]
async fn get_tables_expression_is_an_anchored_case_insensitive_regex() -> R {
    let dir = tempfile::tempdir()?;
    let c = open(dir.path(), Arc::new(ManualClock::new(0)))?;
    let s = scope();
    c.create_database(&s, db("lake")).await?;
    for n in ["t1", "t2", "t10", "events", "events_raw", "other", "xt1"] {
        c.create_table(&s, "lake", table(n, &[])).await?;
    }
    let names = |e: Option<&str>| -> Result<Vec<String>, Error> {
        Ok(c.get_tables(&s, "lake", e, None, None)?
            .items
            .into_iter()
            .map(|t| t.input.name)
            .collect())
    };
    assert_eq!(
        names(None)?,
        strs(&["events", "events_raw", "other", "t1", "t10", "t2", "xt1"])
    );
    assert_eq!(names(Some(""))?.len(), 7, "an empty expression matches everything");
    assert_eq!(names(Some("t*"))?, strs(&["t1", "t10", "t2"]), "a bare * is any run");
    assert_eq!(names(Some("*t1"))?, strs(&["t1", "xt1"]));
    assert_eq!(names(Some("*"))?.len(), 7);
    assert_eq!(names(Some("T1"))?, strs(&["t1"]), "anchored and case-insensitive");
    assert_eq!(names(Some("t."))?, strs(&["t1", "t2"]));
    assert_eq!(names(Some("t.*"))?, strs(&["t1", "t10", "t2"]), ".* stays a regex");
    assert_eq!(names(Some("t[0-9]+"))?, strs(&["t1", "t10", "t2"]));
    assert_eq!(names(Some("events|t1"))?, strs(&["events", "t1"]));
    assert_eq!(names(Some("events(_raw)?"))?, strs(&["events", "events_raw"]));
    assert_eq!(names(Some("nothing"))?, Vec::<String>::new());
    for bad in ["(", "t[", "a{2,1}"] {
        match c.get_tables(&s, "lake", Some(bad), None, None) {
            Err(Error::InvalidInput(m)) => assert!(m.starts_with("Invalid Expression"), "{bad}: {m}"),
            other => panic!("{bad}: expected InvalidInput, got {other:?}"),
        }
    }
    match c.get_tables(&s, "lake", Some(&"a".repeat(2049)), None, None) {
        Err(Error::InvalidInput(m)) => assert_eq!(m, "Expression is longer than 2048 characters"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert!(matches!(
        c.get_tables(&s, "missing", None, None, None),
        Err(Error::EntityNotFound(m)) if m == "Database missing not found."
    ));

    // Paging, with and without an expression.
    let mut token: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let p = c.get_tables(&s, "lake", None, token.as_deref(), Some(3))?;
        pages.push(p.items.into_iter().map(|t| t.input.name).collect::<Vec<_>>());
        token = p.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(
        pages,
        vec![
            strs(&["events", "events_raw", "other"]),
            strs(&["t1", "t10", "t2"]),
            strs(&["xt1"])
        ]
    );
    let p1 = c.get_tables(&s, "lake", Some("t*"), None, Some(2))?;
    assert_eq!(
        p1.items.iter().map(|t| t.input.name.as_str()).collect::<Vec<_>>(),
        vec!["t1", "t10"]
    );
    let p2 = c.get_tables(&s, "lake", Some("t*"), p1.next_token.as_deref(), Some(2))?;
    assert_eq!(
        p2.items.iter().map(|t| t.input.name.as_str()).collect::<Vec<_>>(),
        vec!["t2"]
    );
    assert_eq!(p2.next_token, None);
    Ok(())
}

// ---------------------------------------------------------------------------- partitions

#[tokio::test]
async fn batch_create_partition_reports_errors_per_item() -> R {
    let dir = tempfile::tempdir()?;
    let c = open(dir.path(), Arc::new(ManualClock::new(7_000)))?;
    let s = scope();
    c.create_database(&s, db("lake")).await?;
    c.create_table(&s, "lake", table("ev", &[("year", "int"), ("region", "string")]))
        .await?;
    c.create_partition(&s, "lake", "ev", part(&["2024", "eu"])).await?;
    let errors = c
        .batch_create_partition(
            &s,
            "LAKE",
            "EV",
            vec![
                part(&["2024", "us"]),
                part(&["2024", "eu"]),
                part(&["2025", "eu"]),
                part(&["2025", "eu"]),
                part(&["2026"]),
                part(&["2026", "eu", "x"]),
            ],
        )
        .await?;
    let seen: Vec<(Vec<String>, &str, String)> = errors
        .iter()
        .map(|(v, e)| (v.clone(), e.code(), e.to_string()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                pair("2024", "eu"),
                "AlreadyExistsException",
                "Partition already exists.".to_string()
            ),
            (
                pair("2025", "eu"),
                "AlreadyExistsException",
                "Partition already exists.".to_string()
            ),
            (
                strs(&["2026"]),
                "InvalidInputException",
                "The number of partition keys do not match the number of partition values".to_string()
            ),
            (
                strs(&["2026", "eu", "x"]),
                "InvalidInputException",
                "The number of partition keys do not match the number of partition values".to_string()
            ),
        ]
    );
    let all: Vec<Vec<String>> = c
        .all_partitions(&s, "lake", "ev")?
        .into_iter()
        .map(|p| p.input.values)
        .collect();
    assert_eq!(all, vec![pair("2024", "eu"), pair("2024", "us"), pair("2025", "eu")]);
    let p = c.get_partition(&s, "lake", "ev", &pair("2024", "us"))?;
    assert_eq!(p.database, "lake");
    assert_eq!(p.table, "ev");
    assert_eq!(p.creation_time_ms, 7_000);
    assert_eq!(p.location(), Some("s3://lake/p/2024/us/"));
    match c.create_partition(&s, "lake", "ev", part(&["2024", "us"])).await {
        Err(Error::AlreadyExists(m)) => assert_eq!(m, "Partition already exists."),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    match c.get_partition(&s, "lake", "ev", &pair("1999", "us")) {
        Err(Error::EntityNotFound(m)) => assert_eq!(m, "Cannot find partition."),
        other => panic!("expected EntityNotFound, got {other:?}"),
    }
    match c
        .batch_create_partition(&s, "lake", "nope", vec![part(&["1", "a"])])
        .await
    {
        Err(Error::EntityNotFound(m)) => assert_eq!(m, "Table nope not found."),
        other => panic!("expected EntityNotFound, got {other:?}"),
    }
    // An empty batch is fine.
    assert!(c.batch_create_partition(&s, "lake", "ev", vec![]).await?.is_empty());
    Ok(())
}

async fn expression_fixture(c: &Catalog) -> R {
    let s = scope();
    c.create_database(&s, db("lake")).await?;
    c.create_table(&s, "lake", table("ev", &[("year", "int"), ("region", "string")]))
        .await?;
    let mut inputs = Vec::new();
    for y in ["2023", "2024", "2025"] {
        for r in ["ap", "eu", "us"] {
            inputs.push(part(&[y, r]));
        }
    }
    assert!(c.batch_create_partition(&s, "lake", "ev", inputs).await?.is_empty());
    c.create_table(&s, "lake", table("nums", &[("n", "bigint")])).await?;
    let inputs = (1..=12).map(|n| part(&[&n.to_string()])).collect();
    assert!(c.batch_create_partition(&s, "lake", "nums", inputs).await?.is_empty());
    c.create_table(&s, "lake", table("days", &[("dt", "date")])).await?;
    let inputs = ["2024-01-05", "2024-02-10", "2024-12-31"]
        .iter()
        .map(|d| part(&[d]))
        .collect();
    assert!(c.batch_create_partition(&s, "lake", "days", inputs).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn get_partitions_expressions_over_typed_keys() -> R {
    let dir = tempfile::tempdir()?;
    let c = open(dir.path(), Arc::new(ManualClock::new(0)))?;
    expression_fixture(&c).await?;
    let years = |e: &str| -> Result<Vec<String>, Error> {
        Ok(matching(&c, "ev", e)?
            .into_iter()
            .map(|v| format!("{}/{}", v[0], v[1]))
            .collect())
    };
    assert_eq!(years("year = 2024")?, strs(&["2024/ap", "2024/eu", "2024/us"]));
    assert_eq!(years("year = '2024'")?.len(), 3, "a quoted number compares numerically");
    assert_eq!(years("year <> 2024")?.len(), 6);
    assert_eq!(years("year != 2024")?.len(), 6);
    assert_eq!(years("year > 2024")?, strs(&["2025/ap", "2025/eu", "2025/us"]));
    assert_eq!(years("year >= 2024 and year < 2025")?.len(), 3);
    assert_eq!(years("year <= 2023")?, strs(&["2023/ap", "2023/eu", "2023/us"]));
    assert_eq!(
        years("year IN (2023, 2025) AND region = 'eu'")?,
        strs(&["2023/eu", "2025/eu"])
    );
    assert_eq!(years("year NOT IN (2023, 2025)")?.len(), 3);
    assert_eq!(years("year BETWEEN 2024 AND 2025")?.len(), 6);
    assert_eq!(years("year NOT BETWEEN 2024 AND 2025")?.len(), 3);
    assert_eq!(years("region LIKE 'e%'")?, strs(&["2023/eu", "2024/eu", "2025/eu"]));
    assert_eq!(years("region LIKE '_s'")?, strs(&["2023/us", "2024/us", "2025/us"]));
    assert_eq!(
        years("region NOT LIKE '%u%'")?,
        strs(&["2023/ap", "2024/ap", "2025/ap"])
    );
    assert_eq!(
        years("year = 2023 OR region = 'us'")?,
        strs(&["2023/ap", "2023/eu", "2023/us", "2024/us", "2025/us"])
    );
    assert_eq!(
        years("NOT (year = 2023 OR region = 'us')")?,
        strs(&["2024/ap", "2024/eu", "2025/ap", "2025/eu"])
    );
    assert_eq!(
        years("not year = 2023 and not region = 'us'")?.len(),
        4,
        "NOT binds tighter than AND"
    );
    assert_eq!(
        years("year = 2023 or year = 2024 and region = 'ap'")?.len(),
        4,
        "AND binds tighter than OR"
    );
    assert_eq!(years("REGION is null")?, Vec::<String>::new());
    assert_eq!(years("region IS NOT NULL")?.len(), 9);
    assert_eq!(years("`region` = 'eu' and \"year\" = 2025")?, strs(&["2025/eu"]));
    assert_eq!(years("   ")?.len(), 9, "a blank expression matches everything");

    // Integer keys compare as numbers, not text ("10" > "9").
    let nums = |e: &str| -> Result<Vec<String>, Error> {
        Ok(matching(&c, "nums", e)?.into_iter().map(|v| v[0].clone()).collect())
    };
    assert_eq!(nums("n > 9")?, strs(&["10", "11", "12"]));
    assert_eq!(nums("n between 2 and 4")?, strs(&["2", "3", "4"]));
    assert_eq!(nums("n in (1, 12, 13)")?, strs(&["1", "12"]));
    assert_eq!(nums("n < -1")?, Vec::<String>::new());
    // Dates compare as ISO text.
    let days = |e: &str| -> Result<Vec<String>, Error> {
        Ok(matching(&c, "days", e)?.into_iter().map(|v| v[0].clone()).collect())
    };
    assert_eq!(days("dt >= '2024-02-01'")?, strs(&["2024-02-10", "2024-12-31"]));
    assert_eq!(days("dt between '2024-01-01' and '2024-01-31'")?, strs(&["2024-01-05"]));
    assert_eq!(days("dt like '2024-12-%'")?, strs(&["2024-12-31"]));

    // Refused expressions.
    for (bad, msg) in [
        ("nope = 1", "Unknown column 'nope' in the partition expression"),
        ("year = ", "Unsupported expression: expected a literal"),
        ("(year = 1", "Unsupported expression: expected )"),
        ("year = 1 year", "Unsupported expression: unexpected trailing input"),
        ("region = 'x", "Unsupported expression: unterminated string literal"),
        ("year ~ 1", "Unsupported expression: unexpected character '~'"),
    ] {
        match c.get_partitions(&scope(), "lake", "ev", Some(bad), None, None) {
            Err(e @ Error::InvalidInput(_)) => {
                assert_eq!(e.to_string(), msg, "{bad}");
                assert_eq!(e.code(), "InvalidInputException");
            }
            other => panic!("{bad}: expected InvalidInput, got {other:?}"),
        }
    }
    assert!(matches!(
        c.get_partitions(&scope(), "lake", "ev", Some(&"x".repeat(2049)), None, None),
        Err(Error::InvalidInput(m)) if m == "Expression is longer than 2048 characters"
    ));
    assert!(matches!(
        c.get_partitions(&scope(), "lake", "nope", None, None, None),
        Err(Error::EntityNotFound(m)) if m == "Table nope not found."
    ));
    Ok(())
}

#[tokio::test]
async fn get_partitions_pages_with_and_without_an_expression() -> R {
    let dir = tempfile::tempdir()?;
    let c = open(dir.path(), Arc::new(ManualClock::new(0)))?;
    let s = scope();
    c.create_database(&s, db("lake")).await?;
    c.create_table(&s, "lake", table("nums", &[("n", "int")])).await?;
    let inputs = (0..30).map(|n| part(&[&format!("{n:02}")])).collect();
    assert!(c.batch_create_partition(&s, "lake", "nums", inputs).await?.is_empty());

    let (values, sizes) = all_pages(&c, "lake", "nums", None, 7)?;
    assert_eq!(sizes, vec![7, 7, 7, 7, 2]);
    let expected: Vec<Vec<String>> = (0..30).map(|n| vec![format!("{n:02}")]).collect();
    assert_eq!(values, expected, "every partition exactly once, in order");

    let (values, sizes) = all_pages(&c, "lake", "nums", Some("n >= 10 AND n <> 15"), 4)?;
    assert_eq!(sizes, vec![4, 4, 4, 4, 3]);
    assert_eq!(values.len(), 19);
    assert_eq!(values.first(), Some(&strs(&["10"])));
    assert_eq!(values.last(), Some(&strs(&["29"])));
    assert!(!values.contains(&strs(&["15"])));

    // An exact fit ends without a token; MaxResults is clamped to 1..=1000.
    let (_, sizes) = all_pages(&c, "lake", "nums", None, 30)?;
    assert_eq!(sizes, vec![30]);
    let (_, sizes) = all_pages(&c, "lake", "nums", None, 0)?;
    assert_eq!(sizes.len(), 30);
    let one = c.get_partitions(&s, "lake", "nums", None, None, Some(5_000))?;
    assert_eq!((one.items.len(), one.next_token), (30, None));
    match c.get_partitions(&s, "lake", "nums", None, Some("%%%"), None) {
        Err(Error::InvalidInput(m)) => assert_eq!(m, "Invalid NextToken"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    Ok(())
}

/// Partition values are ordered as value lists (BTreeMap of `Vec<String>`), and the paging
/// token must resume in that order: joined by `/`, `-` (and `.`, space, …) sort before `/`,
/// so a partition whose first value extends another's (`us` then `us-east`) would sort after
/// it in the walk and before it under a joined token, and be skipped by the next page.
#[tokio::test]
async fn get_partitions_paging_keeps_values_that_extend_others() -> R {
    let dir = tempfile::tempdir()?;
    let c = open(dir.path(), Arc::new(ManualClock::new(0)))?;
    let s = scope();
    c.create_database(&s, db("lake")).await?;
    c.create_table(&s, "lake", table("ev", &[("region", "string"), ("day", "string")]))
        .await?;
    let inputs = vec![part(&["us", "1"]), part(&["us-east", "1"]), part(&["us.west", "1"])];
    assert!(c.batch_create_partition(&s, "lake", "ev", inputs).await?.is_empty());
    let (all, _) = all_pages(&c, "lake", "ev", None, 1000)?;
    assert_eq!(all.len(), 3);
    let (paged, _) = all_pages(&c, "lake", "ev", None, 1)?;
    assert_eq!(paged, all, "paging one by one returns every partition");
    Ok(())
}

#[tokio::test]
async fn batch_get_and_batch_delete_partitions() -> R {
    let dir = tempfile::tempdir()?;
    let c = open(dir.path(), Arc::new(ManualClock::new(0)))?;
    let s = scope();
    c.create_database(&s, db("lake")).await?;
    c.create_table(&s, "lake", table("nums", &[("n", "int")])).await?;
    let inputs = (0..30).map(|n| part(&[&n.to_string()])).collect();
    assert!(c.batch_create_partition(&s, "lake", "nums", inputs).await?.is_empty());

    // BatchGetPartition: existing ones in the order asked, missing ones left out. The
    // adapter caps a request at 1000 entries; the engine answers any size.
    let wanted: Vec<Vec<String>> = (0..1000).rev().map(|n| vec![n.to_string()]).collect();
    let got = c.batch_get_partition(&s, "lake", "nums", &wanted)?;
    assert_eq!(got.len(), 30);
    assert_eq!(got[0].input.values, strs(&["29"]));
    assert_eq!(got[29].input.values, strs(&["0"]));
    assert!(c.batch_get_partition(&s, "LAKE", "NUMS", &[strs(&["x"])])?.is_empty());
    assert!(matches!(
        c.batch_get_partition(&s, "lake", "nope", &[]),
        Err(Error::EntityNotFound(_))
    ));

    // BatchDeletePartition: what exists goes, the rest (and repeats) come back as errors.
    let errors = c
        .batch_delete_partition(
            &s,
            "lake",
            "nums",
            vec![
                strs(&["1"]),
                strs(&["1"]),
                strs(&["99"]),
                strs(&["2"]),
                strs(&["3", "x"]),
            ],
        )
        .await?;
    assert_eq!(
        errors
            .iter()
            .map(|(v, e)| (v.clone(), e.code(), e.to_string()))
            .collect::<Vec<_>>(),
        vec![
            (
                strs(&["1"]),
                "EntityNotFoundException",
                "Partition not found.".to_string()
            ),
            (
                strs(&["99"]),
                "EntityNotFoundException",
                "Partition not found.".to_string()
            ),
            (
                strs(&["3", "x"]),
                "EntityNotFoundException",
                "Partition not found.".to_string()
            ),
        ]
    );
    assert_eq!(c.all_partitions(&s, "lake", "nums")?.len(), 28);
    match c.delete_partition(&s, "lake", "nums", strs(&["2"])).await {
        Err(Error::EntityNotFound(m)) => assert_eq!(m, "Partition not found."),
        other => panic!("expected EntityNotFound, got {other:?}"),
    }
    c.delete_partition(&s, "lake", "nums", strs(&["0"])).await?;
    // A large batch in one transaction.
    let errors = c
        .batch_delete_partition(&s, "lake", "nums", (3..30).map(|n| vec![n.to_string()]).collect())
        .await?;
    assert!(errors.is_empty());
    assert!(c.all_partitions(&s, "lake", "nums")?.is_empty());
    Ok(())
}

// ---------------------------------------------------------------------------- durability

#[tokio::test]
async fn everything_survives_closing_and_reopening_the_store() -> R {
    let dir = tempfile::tempdir()?;
    let s = scope();
    let eu = Scope {
        region: "eu-west-1".into(),
        ..s.clone()
    };
    {
        let c = open(dir.path(), Arc::new(ManualClock::new(5_000)))?;
        c.create_database(
            &s,
            DatabaseInput {
                name: "Lake".into(),
                description: Some("the lake".into()),
                ..DatabaseInput::default()
            },
        )
        .await?;
        c.create_database(&s, db("gone")).await?;
        c.create_database(&eu, db("lake")).await?;
        let mut t = table("Events", &[("year", "int"), ("region", "string")]);
        t.parameters = Some(
            [
                ("projection.enabled".to_string(), "true".to_string()),
                ("classification".to_string(), "json".to_string()),
            ]
            .into(),
        );
        c.create_table(&s, "lake", t.clone()).await?;
        c.create_table(&s, "lake", table("dropped", &[])).await?;
        c.create_table(&s, "gone", table("x", &[])).await?;
        t.description = Some("v1".into());
        c.update_table(&s, "lake", t, false, Some("0")).await?;
        let inputs = vec![
            part(&["2024", "eu"]),
            part(&["2024", "a/b"]),
            part(&["2025", "50%"]),
            part(&["2025", "us"]),
        ];
        assert!(c.batch_create_partition(&s, "lake", "events", inputs).await?.is_empty());
        c.delete_partition(&s, "lake", "events", pair("2025", "us")).await?;
        c.delete_table(&s, "lake", "dropped").await?;
        c.delete_database(&s, "gone").await?;
        c.update_database(
            &s,
            "lake",
            DatabaseInput {
                name: "lake".into(),
                description: Some("updated".into()),
                ..DatabaseInput::default()
            },
        )
        .await?;
    }
    let c = open(dir.path(), Arc::new(ManualClock::new(9_000)))?;
    let names: Vec<String> = c
        .get_databases(&s, None, None)?
        .items
        .into_iter()
        .map(|d| d.input.name)
        .collect();
    assert_eq!(names, strs(&["lake"]));
    let d = c.get_database(&s, "lake")?;
    assert_eq!(d.input.description.as_deref(), Some("updated"));
    assert_eq!(d.create_time_ms, 5_000);
    assert_eq!(c.get_databases(&eu, None, None)?.items.len(), 1);
    assert!(c.get_tables(&eu, "lake", None, None, None)?.items.is_empty());

    let tables: Vec<String> = c
        .get_tables(&s, "lake", None, None, None)?
        .items
        .into_iter()
        .map(|t| t.input.name)
        .collect();
    assert_eq!(tables, strs(&["events"]));
    let t = c.get_table(&s, "lake", "events")?;
    assert_eq!(t.version_id, "1");
    assert_eq!(t.input.description.as_deref(), Some("v1"));
    assert_eq!(t.input.parameter("projection.enabled"), Some("true"));
    assert_eq!(t.input.parameter("classification"), Some("json"));
    assert_eq!(
        t.input
            .storage_descriptor
            .as_ref()
            .and_then(|sd| sd.serde_info.as_ref())
            .and_then(|si| si.serialization_library.as_deref()),
        Some("org.openx.data.jsonserde.JsonSerDe")
    );
    assert_eq!(
        c.get_table_versions(&s, "lake", "events", None, None)?
            .items
            .iter()
            .map(|v| v.version_id.as_str())
            .collect::<Vec<_>>(),
        vec!["1", "0"]
    );
    // Values with the key separators come back intact.
    let parts: Vec<Vec<String>> = c
        .all_partitions(&s, "lake", "events")?
        .into_iter()
        .map(|p| p.input.values)
        .collect();
    assert_eq!(
        parts,
        vec![pair("2024", "a/b"), pair("2024", "eu"), pair("2025", "50%")]
    );
    assert_eq!(
        c.get_partition(&s, "lake", "events", &pair("2024", "a/b"))?.location(),
        Some("s3://lake/p/2024/a/b/")
    );
    assert_eq!(matching(&c, "events", "region = 'a/b' or region = '50%'")?.len(), 2);
    assert!(matches!(c.get_database(&s, "gone"), Err(Error::EntityNotFound(_))));
    assert!(matches!(
        c.get_table(&s, "lake", "dropped"),
        Err(Error::EntityNotFound(_))
    ));
    // And it keeps working: a change after the reopen is durable too.
    c.create_partition(&s, "lake", "events", part(&["2026", "eu"])).await?;
    c.reset().await?;
    drop(c);
    let c = open(dir.path(), Arc::new(ManualClock::new(0)))?;
    assert!(c.get_databases(&s, None, None)?.items.is_empty(), "reset is durable");
    assert!(c.get_databases(&eu, None, None)?.items.is_empty());
    Ok(())
}
