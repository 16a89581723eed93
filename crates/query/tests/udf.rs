//! The Trino functions of `kd_query::udf` (and the DataFusion ones Athena users call by their
//! Trino names) over a multi-row in-memory table: each is called with column arguments, with
//! literals and with a mix, and must answer one value per row.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, Int64Builder, ListBuilder, MapBuilder, StringArray, StringBuilder, StringViewArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};

const ROWS: usize = 5;

/// Five rows; `view` is a `Utf8View` column, the type Parquet `string` columns are read as.
fn batch() -> Result<RecordBatch> {
    let id: ArrayRef = Arc::new(Int64Array::from_iter_values(1..=ROWS as i64));
    let doc: ArrayRef = Arc::new(StringArray::from(vec![
        Some(r#"{"a":{"b":"x"},"n":1}"#),
        Some(r#"{"a":{"b":"y"},"n":2.5}"#),
        Some(r#"{"a":[10,{"b":"z"}],"n":true}"#),
        None,
        Some("not json"),
    ]));
    let path: ArrayRef = Arc::new(StringArray::from(vec![
        Some("$.a.b"),
        Some("$.n"),
        Some("$.a[1].b"),
        Some("$.a"),
        None,
    ]));
    let iso: ArrayRef = Arc::new(StringArray::from(vec![
        Some("2024-01-02T03:04:05Z"),
        Some("2024-01-02T03:04:05.250+01:00"),
        Some("2024-02-29"),
        None,
        Some("garbage"),
    ]));
    let view: ArrayRef = Arc::new(StringViewArray::from(vec![
        Some("2024/01/02/03"),
        Some("2024/12/31/23"),
        Some("2025/06/15/00"),
        None,
        Some("nope"),
    ]));
    let fmt: ArrayRef = Arc::new(StringArray::from(vec![
        Some("%Y/%m/%d/%H"),
        Some("%Y/%m/%d/%H"),
        Some("%Y/%m/%d/%H"),
        Some("%Y/%m/%d/%H"),
        None,
    ]));
    let mut list = ListBuilder::new(Int64Builder::new());
    for row in [
        vec![Some(1), Some(2), Some(3)],
        vec![],
        vec![Some(7)],
        vec![Some(4), None],
        vec![Some(5), Some(6)],
    ] {
        list.values().extend(row);
        list.append(true);
    }
    let arr: ArrayRef = Arc::new(list.finish());
    let mut map = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
    for row in [&[("k", 1), ("j", 2)][..], &[], &[("k", 3)], &[("j", 4)], &[("k", 5)]] {
        for (k, v) in row {
            map.keys().append_value(k);
            map.values().append_value(*v);
        }
        map.append(true)?;
    }
    let m: ArrayRef = Arc::new(map.finish());
    Ok(RecordBatch::try_from_iter(vec![
        ("id", id),
        ("doc", doc),
        ("path", path),
        ("iso", iso),
        ("view", view),
        ("fmt", fmt),
        ("arr", arr),
        ("m", m),
    ])?)
}

/// A session with the module's functions and table `t` split over two partitions (two
/// batches of different lengths), so the functions see several batches.
async fn ctx() -> Result<SessionContext> {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    kd_query::udf::register(&ctx);
    let b = batch()?;
    let t = MemTable::try_new(b.schema(), vec![vec![b.slice(0, 3)], vec![b.slice(3, ROWS - 3)]])?;
    ctx.register_table("t", Arc::new(t))?;
    Ok(ctx)
}

/// The first column of `SELECT <expr> FROM t ORDER BY id`, as text (NULL → None).
async fn column(ctx: &SessionContext, expr: &str) -> Result<Vec<Option<String>>> {
    let batches = ctx
        .sql(&format!("SELECT {expr} FROM t ORDER BY id"))
        .await?
        .collect()
        .await?;
    let mut out = Vec::new();
    for b in batches {
        let a = cast(b.column(0), &DataType::Utf8)?;
        let a = a
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| datafusion::common::DataFusionError::Internal("not a string array".into()))?;
        out.extend(a.iter().map(|v| v.map(str::to_owned)));
    }
    Ok(out)
}

fn some(v: &[Option<&str>]) -> Vec<Option<String>> {
    v.iter().map(|s| s.map(str::to_owned)).collect()
}

fn all(v: Option<&str>) -> Vec<Option<String>> {
    vec![v.map(str::to_owned); ROWS]
}

#[tokio::test]
async fn json_extract_scalar_over_rows() -> Result<()> {
    let ctx = ctx().await?;
    assert_eq!(
        column(&ctx, "json_extract_scalar(doc, path)").await?,
        some(&[Some("x"), Some("2.5"), Some("z"), None, None])
    );
    assert_eq!(
        column(&ctx, "json_extract_scalar(doc, '$.a.b')").await?,
        some(&[Some("x"), Some("y"), None, None, None])
    );
    assert_eq!(
        column(&ctx, r#"json_extract_scalar('{"q":"w"}', path)"#).await?,
        some(&[None, None, None, None, None])
    );
    assert_eq!(
        column(&ctx, r#"json_extract_scalar('{"q":"w"}', '$.q')"#).await?,
        all(Some("w"))
    );
    Ok(())
}

#[tokio::test]
async fn json_extract_over_rows() -> Result<()> {
    let ctx = ctx().await?;
    assert_eq!(
        column(&ctx, "json_extract(doc, '$.a')").await?,
        some(&[
            Some(r#"{"b":"x"}"#),
            Some(r#"{"b":"y"}"#),
            Some(r#"[10,{"b":"z"}]"#),
            None,
            None
        ])
    );
    assert_eq!(
        column(&ctx, "json_extract(doc, path)").await?,
        some(&[Some(r#""x""#), Some("2.5"), Some(r#""z""#), None, None])
    );
    assert_eq!(
        column(&ctx, r#"json_extract('{"q":[1]}', '$.q')"#).await?,
        all(Some("[1]"))
    );
    Ok(())
}

#[tokio::test]
async fn from_iso8601_over_rows() -> Result<()> {
    let ctx = ctx().await?;
    assert_eq!(
        column(&ctx, "CAST(from_iso8601_timestamp(iso) AS BIGINT)").await?,
        some(&[
            Some("1704164645000"),
            Some("1704161045250"),
            Some("1709164800000"),
            None,
            None
        ])
    );
    assert_eq!(
        column(
            &ctx,
            "from_iso8601_timestamp('2024-01-02T03:04:05Z') = from_iso8601_timestamp(iso)"
        )
        .await?,
        some(&[Some("true"), Some("false"), Some("false"), None, None])
    );
    assert_eq!(
        column(&ctx, "from_iso8601_date(substr(iso, 1, 10))").await?,
        some(&[Some("2024-01-02"), Some("2024-01-02"), Some("2024-02-29"), None, None])
    );
    assert_eq!(
        column(&ctx, "from_iso8601_date('2024-03-01')").await?,
        all(Some("2024-03-01"))
    );
    Ok(())
}

#[tokio::test]
async fn date_parse_over_rows() -> Result<()> {
    let ctx = ctx().await?;
    let hours = some(&[
        Some("2024-01-02T03:00:00"),
        Some("2024-12-31T23:00:00"),
        Some("2025-06-15T00:00:00"),
        None,
        None,
    ]);
    // The reported failure: a column and a literal format.
    assert_eq!(column(&ctx, "date_parse(view, '%Y/%m/%d/%H')").await?, hours);
    assert_eq!(column(&ctx, "date_parse(view, fmt)").await?, hours);
    assert_eq!(
        column(&ctx, "date_parse('2024-05-06 07:08:09', '%Y-%m-%d %H:%i:%s')").await?,
        all(Some("2024-05-06T07:08:09"))
    );
    assert_eq!(
        column(&ctx, "date_parse('2024/05/06/07', fmt)").await?,
        some(&[
            Some("2024-05-06T07:00:00"),
            Some("2024-05-06T07:00:00"),
            Some("2024-05-06T07:00:00"),
            Some("2024-05-06T07:00:00"),
            None
        ])
    );
    assert_eq!(
        column(&ctx, "date_parse('2024-05-06', '%Y-%m-%d')").await?,
        all(Some("2024-05-06T00:00:00"))
    );
    // In a filter too (the predicate sees whole batches).
    let n = ctx
        .sql("SELECT count(*) FROM t WHERE date_parse(view, '%Y/%m/%d/%H') >= TIMESTAMP '2024-06-01 00:00:00'")
        .await?
        .collect()
        .await?;
    let n = cast(n[0].column(0), &DataType::Int64)?;
    assert_eq!(n.as_any().downcast_ref::<Int64Array>().map(|a| a.value(0)), Some(2));
    Ok(())
}

#[tokio::test]
async fn date_format_over_rows() -> Result<()> {
    let ctx = ctx().await?;
    assert_eq!(
        column(&ctx, "date_format(date_parse(view, fmt), '%Y-%m-%d %H:%i')").await?,
        some(&[
            Some("2024-01-02 03:00"),
            Some("2024-12-31 23:00"),
            Some("2025-06-15 00:00"),
            None,
            None
        ])
    );
    assert_eq!(
        column(&ctx, "date_format(from_iso8601_timestamp(iso), '%d.%m.%Y')").await?,
        some(&[Some("02.01.2024"), Some("02.01.2024"), Some("29.02.2024"), None, None])
    );
    assert_eq!(
        column(&ctx, "date_format(TIMESTAMP '2024-05-06 07:08:09', fmt)").await?,
        some(&[
            Some("2024/05/06/07"),
            Some("2024/05/06/07"),
            Some("2024/05/06/07"),
            Some("2024/05/06/07"),
            None
        ])
    );
    assert_eq!(
        column(&ctx, "date_format(TIMESTAMP '2024-05-06 07:08:09', '%H:%i:%s')").await?,
        all(Some("07:08:09"))
    );
    Ok(())
}

#[tokio::test]
async fn element_at_over_rows() -> Result<()> {
    let ctx = ctx().await?;
    assert_eq!(
        column(&ctx, "element_at(arr, 1)").await?,
        some(&[Some("1"), None, Some("7"), Some("4"), Some("5")])
    );
    assert_eq!(
        column(&ctx, "element_at(arr, -1)").await?,
        some(&[Some("3"), None, Some("7"), None, Some("6")])
    );
    assert_eq!(
        column(&ctx, "element_at(arr, CAST(id AS INT))").await?,
        some(&[Some("1"), None, None, None, None])
    );
    assert_eq!(
        column(&ctx, "element_at(m, 'k')").await?,
        some(&[Some("1"), None, Some("3"), None, Some("5")])
    );
    assert_eq!(
        column(&ctx, "element_at(make_array(4, 5, 6), 2)").await?,
        all(Some("5"))
    );
    Ok(())
}

#[tokio::test]
async fn cardinality_and_approx_distinct_over_rows() -> Result<()> {
    let ctx = ctx().await?;
    assert_eq!(
        column(&ctx, "cardinality(arr)").await?,
        some(&[Some("3"), Some("0"), Some("1"), Some("2"), Some("2")])
    );
    assert_eq!(column(&ctx, "cardinality(make_array(1, 2))").await?, all(Some("2")));
    let b = ctx
        .sql("SELECT approx_distinct(fmt), approx_distinct(view), approx_distinct(id % 2) FROM t")
        .await?
        .collect()
        .await?;
    let got: Vec<i64> = (0..3)
        .filter_map(|i| {
            let a = cast(b[0].column(i), &DataType::Int64).ok()?;
            a.as_any().downcast_ref::<Int64Array>().map(|a| a.value(0))
        })
        .collect();
    assert_eq!(got, vec![1, 4, 2]);
    Ok(())
}
