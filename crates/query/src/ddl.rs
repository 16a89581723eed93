//! Athena's Hive DDL, parsed by hand (sqlparser's Hive support differs by release) and run
//! as catalog calls: CREATE DATABASE/SCHEMA, DROP DATABASE, CREATE EXTERNAL TABLE, DROP
//! TABLE, SHOW DATABASES/SCHEMAS, SHOW TABLES, SHOW PARTITIONS, DESCRIBE, MSCK REPAIR TABLE,
//! ALTER TABLE ADD/DROP PARTITION. Anything else goes to DataFusion's SQL front end.

use std::collections::BTreeMap;

use crate::ports::{ColumnDef, TableDef};

/// Deepest type nesting read inside a column list.
const MAX_DEPTH: usize = 64;

/// `(key, value)` pairs of a `PARTITION (…)` clause.
pub type PartitionSpec = Vec<(String, String)>;

/// A parsed DDL statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Ddl {
    /// CREATE DATABASE.
    CreateDatabase {
        /// Name.
        name: String,
        /// IF NOT EXISTS.
        if_not_exists: bool,
        /// COMMENT.
        comment: Option<String>,
        /// LOCATION.
        location: Option<String>,
        /// WITH DBPROPERTIES.
        properties: BTreeMap<String, String>,
    },
    /// DROP DATABASE.
    DropDatabase {
        /// Name.
        name: String,
        /// IF EXISTS.
        if_exists: bool,
        /// CASCADE.
        cascade: bool,
    },
    /// CREATE EXTERNAL TABLE.
    CreateTable {
        /// The table (database left empty when not qualified).
        table: TableDef,
        /// IF NOT EXISTS.
        if_not_exists: bool,
    },
    /// DROP TABLE.
    DropTable {
        /// Database (empty: the query's).
        db: String,
        /// Name.
        name: String,
        /// IF EXISTS.
        if_exists: bool,
    },
    /// SHOW DATABASES [LIKE 'p'].
    ShowDatabases(Option<String>),
    /// SHOW TABLES [IN db] ['p'].
    ShowTables(Option<String>, Option<String>),
    /// SHOW PARTITIONS t.
    ShowPartitions(String, String),
    /// DESCRIBE t.
    Describe(String, String),
    /// MSCK REPAIR TABLE t.
    Repair(String, String),
    /// ALTER TABLE t ADD PARTITION (…) [LOCATION '…'] …
    AddPartitions {
        /// Database.
        db: String,
        /// Table.
        name: String,
        /// Partition specs and locations.
        parts: Vec<(PartitionSpec, Option<String>)>,
    },
    /// ALTER TABLE t DROP PARTITION (…), …
    DropPartitions {
        /// Database.
        db: String,
        /// Table.
        name: String,
        /// IF EXISTS.
        if_exists: bool,
        /// Partition specs.
        parts: Vec<PartitionSpec>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Str(String),
    Sym(char),
}

fn tokenize(s: &str) -> Result<Vec<(Tok, usize, usize)>, String> {
    let b: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '-' && b.get(i + 1) == Some(&'-') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '\'' || c == '"' || c == '`' {
            let mut v = String::new();
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err("unterminated quoted text".into()),
                    Some(ch) if *ch == c && b.get(i + 1) == Some(&c) => {
                        v.push(c);
                        i += 2;
                    }
                    Some(ch) if *ch == c => {
                        i += 1;
                        break;
                    }
                    Some('\\') if c == '\'' && i + 1 < b.len() => {
                        let n = b[i + 1];
                        v.push(match n {
                            't' => '\t',
                            'n' => '\n',
                            '0' if b.get(i + 2..i + 4) == Some(&['0', '1']) => {
                                i += 2;
                                '\u{1}'
                            }
                            'u' if b
                                .get(i + 2..i + 6)
                                .is_some_and(|h| h.iter().collect::<String>() == "0001") =>
                            {
                                i += 4;
                                '\u{1}'
                            }
                            other => other,
                        });
                        i += 2;
                    }
                    Some(ch) => {
                        v.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push((if c == '\'' { Tok::Str(v) } else { Tok::Quoted(v) }, start, i));
            continue;
        }
        if c.is_alphanumeric() || c == '_' || c == '$' {
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_' || b[i] == '$') {
                i += 1;
            }
            out.push((Tok::Word(b[start..i].iter().collect()), start, i));
            continue;
        }
        out.push((Tok::Sym(c), start, i + 1));
        i += 1;
    }
    Ok(out)
}

struct P<'a> {
    src: Vec<char>,
    toks: Vec<(Tok, usize, usize)>,
    pos: usize,
    _s: &'a str,
}

type R<T> = Result<T, String>;

impl P<'_> {
    fn peek_kw(&self, kw: &str) -> bool {
        matches!(self.toks.get(self.pos), Some((Tok::Word(w), ..)) if w.eq_ignore_ascii_case(kw))
    }
    fn kw(&mut self, kw: &str) -> bool {
        if self.peek_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn kws(&mut self, kws: &[&str]) -> bool {
        let save = self.pos;
        for k in kws {
            if !self.kw(k) {
                self.pos = save;
                return false;
            }
        }
        true
    }
    fn expect_kw(&mut self, kw: &str) -> R<()> {
        if self.kw(kw) {
            Ok(())
        } else {
            Err(self.err(&format!("expecting {kw}")))
        }
    }
    fn sym(&mut self, c: char) -> bool {
        if matches!(self.toks.get(self.pos), Some((Tok::Sym(s), ..)) if *s == c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect_sym(&mut self, c: char) -> R<()> {
        if self.sym(c) {
            Ok(())
        } else {
            Err(self.err(&format!("expecting '{c}'")))
        }
    }
    fn err(&self, what: &str) -> String {
        let (col, found) = match self.toks.get(self.pos) {
            Some((t, s, _)) => (
                s + 1,
                match t {
                    Tok::Word(w) | Tok::Quoted(w) => w.clone(),
                    Tok::Str(s) => format!("'{s}'"),
                    Tok::Sym(c) => c.to_string(),
                },
            ),
            None => (self.src.len() + 1, "<EOF>".into()),
        };
        format!("line 1:{col}: mismatched input '{found}'. {what}")
    }
    fn ident(&mut self) -> R<String> {
        match self.toks.get(self.pos).cloned() {
            Some((Tok::Word(w), ..)) => {
                self.pos += 1;
                Ok(w.to_lowercase())
            }
            Some((Tok::Quoted(w), ..)) => {
                self.pos += 1;
                Ok(w.to_lowercase())
            }
            _ => Err(self.err("expecting an identifier")),
        }
    }
    fn string(&mut self) -> R<String> {
        match self.toks.get(self.pos).cloned() {
            Some((Tok::Str(s), ..)) => {
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.err("expecting a string literal")),
        }
    }
    fn value(&mut self) -> R<String> {
        match self.toks.get(self.pos).cloned() {
            Some((Tok::Str(s), ..)) | Some((Tok::Word(s), ..)) => {
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.err("expecting a value")),
        }
    }
    fn qualified(&mut self) -> R<(String, String)> {
        let a = self.ident()?;
        if self.sym('.') {
            let b = self.ident()?;
            if self.sym('.') {
                // catalog.db.table
                return Ok((b, self.ident()?));
            }
            return Ok((a, b));
        }
        Ok((String::new(), a))
    }
    fn props(&mut self) -> R<BTreeMap<String, String>> {
        let mut m = BTreeMap::new();
        self.expect_sym('(')?;
        if self.sym(')') {
            return Ok(m);
        }
        loop {
            let k = self.string()?;
            self.expect_sym('=')?;
            let v = self.string()?;
            m.insert(k, v);
            if self.sym(')') {
                return Ok(m);
            }
            self.expect_sym(',')?;
        }
    }
    fn end(&mut self) -> R<()> {
        self.sym(';');
        if self.pos < self.toks.len() {
            return Err(self.err("expecting end of statement"));
        }
        Ok(())
    }
    /// `(name type [COMMENT '…'], …)`; the type is the source text up to the next `,`/`)`
    /// at depth 0.
    fn columns(&mut self) -> R<Vec<ColumnDef>> {
        self.expect_sym('(')?;
        let mut cols = Vec::new();
        loop {
            let name = self.ident()?;
            let start = self
                .toks
                .get(self.pos)
                .map(|t| t.1)
                .ok_or_else(|| self.err("expecting a type"))?;
            let mut depth = 0usize;
            let mut end = start;
            while let Some((t, _, e)) = self.toks.get(self.pos).cloned() {
                match t {
                    Tok::Sym('<') | Tok::Sym('(') => depth += 1,
                    Tok::Sym('>') | Tok::Sym(')') if depth > 0 => depth -= 1,
                    Tok::Sym(',') | Tok::Sym(')') if depth == 0 => break,
                    Tok::Word(w) if depth == 0 && w.eq_ignore_ascii_case("comment") => break,
                    _ => {}
                }
                if depth > MAX_DEPTH {
                    return Err(self.err("type nested too deeply"));
                }
                end = e;
                self.pos += 1;
            }
            let type_name: String = self.src[start..end].iter().collect::<String>().trim().to_lowercase();
            if type_name.is_empty() {
                return Err(self.err("expecting a type"));
            }
            let comment = if self.kw("comment") { Some(self.string()?) } else { None };
            cols.push(ColumnDef {
                name,
                type_name,
                comment,
            });
            if self.sym(')') {
                return Ok(cols);
            }
            self.expect_sym(',')?;
        }
    }
    fn partition_spec(&mut self) -> R<Vec<(String, String)>> {
        self.expect_sym('(')?;
        let mut spec = Vec::new();
        loop {
            let k = self.ident()?;
            self.expect_sym('=')?;
            let v = self.value()?;
            spec.push((k, v));
            if self.sym(')') {
                return Ok(spec);
            }
            self.expect_sym(',')?;
        }
    }
}

/// The classes of `STORED AS <format>`: (input, output, serde).
fn stored_as(format: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match format.to_ascii_uppercase().as_str() {
        "PARQUET" => (
            "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        ),
        "TEXTFILE" => (
            "org.apache.hadoop.mapred.TextInputFormat",
            "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe",
        ),
        "ORC" => (
            "org.apache.hadoop.hive.ql.io.orc.OrcInputFormat",
            "org.apache.hadoop.hive.ql.io.orc.OrcOutputFormat",
            "org.apache.hadoop.hive.ql.io.orc.OrcSerde",
        ),
        _ => return None,
    })
}

/// Parses `sql` when it is a DDL statement this module runs; `None` for anything else.
pub fn parse(sql: &str) -> Option<Result<Ddl, String>> {
    let toks = match tokenize(sql) {
        Ok(t) => t,
        Err(e) => return Some(Err(format!("line 1:1: {e}"))),
    };
    let first = match toks.first() {
        Some((Tok::Word(w), ..)) => w.to_ascii_uppercase(),
        _ => return None,
    };
    if !matches!(
        first.as_str(),
        "CREATE" | "DROP" | "SHOW" | "DESCRIBE" | "DESC" | "MSCK" | "ALTER"
    ) {
        return None;
    }
    let mut p = P {
        src: sql.chars().collect(),
        toks,
        pos: 1,
        _s: sql,
    };
    Some(parse_inner(&mut p, &first))
}

fn parse_inner(p: &mut P<'_>, first: &str) -> R<Ddl> {
    match first {
        "CREATE" => {
            if p.kw("database") || p.kw("schema") {
                let if_not_exists = p.kws(&["if", "not", "exists"]);
                let name = p.ident()?;
                let (mut comment, mut location, mut properties) = (None, None, BTreeMap::new());
                loop {
                    if p.kw("comment") {
                        comment = Some(p.string()?);
                    } else if p.kw("location") {
                        location = Some(p.string()?);
                    } else if p.kws(&["with", "dbproperties"]) {
                        properties = p.props()?;
                    } else {
                        break;
                    }
                }
                p.end()?;
                return Ok(Ddl::CreateDatabase {
                    name,
                    if_not_exists,
                    comment,
                    location,
                    properties,
                });
            }
            let external = p.kw("external");
            if !p.kw("table") {
                return Err(p.err("NOT_SUPPORTED: only CREATE DATABASE and CREATE EXTERNAL TABLE are supported"));
            }
            let if_not_exists = p.kws(&["if", "not", "exists"]);
            let (db, name) = p.qualified()?;
            if p.peek_kw("as") || p.peek_kw("with") {
                return Err("NOT_SUPPORTED: CREATE TABLE AS SELECT is not supported by kinesis-data".into());
            }
            if !external {
                return Err(p.err("NOT_SUPPORTED: Athena's Hive DDL needs CREATE EXTERNAL TABLE"));
            }
            let columns = p.columns()?;
            let mut t = TableDef {
                database: db,
                name,
                columns,
                table_type: Some("EXTERNAL_TABLE".into()),
                ..TableDef::default()
            };
            t.parameters.insert("EXTERNAL".into(), "TRUE".into());
            let mut stored: Option<String> = None;
            loop {
                if p.kw("comment") {
                    t.description = Some(p.string()?);
                } else if p.kws(&["partitioned", "by"]) {
                    t.partition_keys = p.columns()?;
                } else if p.kws(&["clustered", "by"]) {
                    return Err("NOT_SUPPORTED: bucketed tables are not supported by kinesis-data".into());
                } else if p.kws(&["row", "format", "serde"]) {
                    t.serde = Some(p.string()?);
                    if p.kws(&["with", "serdeproperties"]) {
                        t.serde_parameters.extend(p.props()?);
                    }
                } else if p.kws(&["row", "format", "delimited"]) {
                    t.serde = Some("org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe".into());
                    loop {
                        if p.kws(&["fields", "terminated", "by"]) {
                            let d = p.string()?;
                            t.serde_parameters.insert("field.delim".into(), d.clone());
                            t.serde_parameters.insert("serialization.format".into(), d);
                        } else if p.kws(&["escaped", "by"]) {
                            t.serde_parameters.insert("escape.delim".into(), p.string()?);
                        } else if p.kws(&["collection", "items", "terminated", "by"]) {
                            t.serde_parameters.insert("collection.delim".into(), p.string()?);
                        } else if p.kws(&["map", "keys", "terminated", "by"]) {
                            t.serde_parameters.insert("mapkey.delim".into(), p.string()?);
                        } else if p.kws(&["lines", "terminated", "by"]) {
                            t.serde_parameters.insert("line.delim".into(), p.string()?);
                        } else if p.kws(&["null", "defined", "as"]) {
                            t.serde_parameters
                                .insert("serialization.null.format".into(), p.string()?);
                        } else {
                            break;
                        }
                    }
                } else if p.kws(&["stored", "as"]) {
                    if p.kw("inputformat") {
                        t.input_format = Some(p.string()?);
                        p.expect_kw("outputformat")?;
                        t.output_format = Some(p.string()?);
                    } else {
                        stored = Some(p.ident()?);
                    }
                } else if p.kw("location") {
                    t.location = Some(p.string()?);
                } else if p.kw("tblproperties") {
                    t.parameters.extend(p.props()?);
                } else {
                    break;
                }
            }
            p.end()?;
            let format = stored.unwrap_or_else(|| "textfile".into());
            let (i, o, s) = stored_as(&format).ok_or_else(|| format!("NOT_SUPPORTED: STORED AS {format}"))?;
            if t.input_format.is_none() {
                t.input_format = Some(i.into());
                t.output_format = Some(o.into());
            }
            if t.serde.is_none() {
                t.serde = Some(s.into());
            }
            let classification = match t.serde.as_deref().unwrap_or_default() {
                s if s.contains("Json") || s.contains("json") => "json",
                s if s.contains("Parquet") => "parquet",
                s if s.contains("OpenCSV") => "csv",
                _ => "csv",
            };
            t.parameters
                .entry("classification".into())
                .or_insert_with(|| classification.into());
            if t.location.is_none() {
                return Err("SYNTAX_ERROR: line 1:1: External location must be specified (LOCATION 's3://…')".into());
            }
            Ok(Ddl::CreateTable {
                table: t,
                if_not_exists,
            })
        }
        "DROP" => {
            if p.kw("database") || p.kw("schema") {
                let if_exists = p.kws(&["if", "exists"]);
                let name = p.ident()?;
                let cascade = p.kw("cascade");
                p.kw("restrict");
                p.end()?;
                return Ok(Ddl::DropDatabase {
                    name,
                    if_exists,
                    cascade,
                });
            }
            p.expect_kw("table")?;
            let if_exists = p.kws(&["if", "exists"]);
            let (db, name) = p.qualified()?;
            p.end()?;
            Ok(Ddl::DropTable { db, name, if_exists })
        }
        "SHOW" => {
            if p.kw("databases") || p.kw("schemas") {
                let like = if p.kw("like") { Some(p.string()?) } else { None };
                p.end()?;
                return Ok(Ddl::ShowDatabases(like));
            }
            if p.kw("tables") {
                let db = if p.kw("in") || p.kw("from") {
                    Some(p.ident()?)
                } else {
                    None
                };
                let pattern = if p.kw("like") || matches!(p.toks.get(p.pos), Some((Tok::Str(_), ..))) {
                    Some(p.string()?)
                } else {
                    None
                };
                p.end()?;
                return Ok(Ddl::ShowTables(db, pattern));
            }
            if p.kw("partitions") {
                let (db, name) = p.qualified()?;
                p.end()?;
                return Ok(Ddl::ShowPartitions(db, name));
            }
            Err(p.err("NOT_SUPPORTED: SHOW DATABASES, SHOW TABLES and SHOW PARTITIONS are supported"))
        }
        "DESCRIBE" | "DESC" => {
            p.kw("formatted");
            p.kw("extended");
            let (db, name) = p.qualified()?;
            p.end()?;
            Ok(Ddl::Describe(db, name))
        }
        "MSCK" => {
            p.expect_kw("repair")?;
            p.expect_kw("table")?;
            let (db, name) = p.qualified()?;
            p.end()?;
            Ok(Ddl::Repair(db, name))
        }
        "ALTER" => {
            p.expect_kw("table")?;
            let (db, name) = p.qualified()?;
            if p.kw("add") {
                p.kws(&["if", "not", "exists"]);
                let mut parts = Vec::new();
                while p.kw("partition") {
                    let spec = p.partition_spec()?;
                    let loc = if p.kw("location") { Some(p.string()?) } else { None };
                    parts.push((spec, loc));
                }
                if parts.is_empty() {
                    return Err(p.err("expecting PARTITION"));
                }
                p.end()?;
                return Ok(Ddl::AddPartitions { db, name, parts });
            }
            if p.kw("drop") {
                let if_exists = p.kws(&["if", "exists"]);
                let mut parts = Vec::new();
                loop {
                    p.expect_kw("partition")?;
                    parts.push(p.partition_spec()?);
                    if !p.sym(',') {
                        break;
                    }
                }
                p.end()?;
                return Ok(Ddl::DropPartitions {
                    db,
                    name,
                    if_exists,
                    parts,
                });
            }
            Err(p.err("NOT_SUPPORTED: ALTER TABLE ADD PARTITION and DROP PARTITION are supported"))
        }
        _ => Err(p.err("unsupported statement")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_athena_ddl() {
        let sql = "CREATE EXTERNAL TABLE IF NOT EXISTS lake.events (
            id bigint COMMENT 'the id', payload struct<a:string, b:array<int>>, `Name` string)
          PARTITIONED BY (datehour string)
          ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' WITH SERDEPROPERTIES ('ignore.malformed.json'='true')
          LOCATION 's3://bucket/events/'
          TBLPROPERTIES ('projection.enabled'='true', 'projection.datehour.type'='date');";
        let Some(Ok(Ddl::CreateTable { table, if_not_exists })) = parse(sql) else {
            panic!("{:?}", parse(sql));
        };
        assert!(if_not_exists);
        assert_eq!(table.database, "lake");
        assert_eq!(table.columns.len(), 3);
        assert_eq!(table.columns[1].type_name, "struct<a:string, b:array<int>>");
        assert_eq!(table.columns[2].name, "name");
        assert_eq!(table.partition_keys[0].name, "datehour");
        assert_eq!(
            table.serde_parameters.get("ignore.malformed.json").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            table.parameters.get("projection.enabled").map(String::as_str),
            Some("true")
        );
        assert_eq!(table.parameters.get("classification").map(String::as_str), Some("json"));
        assert!(parse("SELECT 1").is_none());
        assert!(matches!(
            parse("SHOW TABLES IN lake"),
            Some(Ok(Ddl::ShowTables(Some(_), None)))
        ));
        assert!(matches!(
            parse("ALTER TABLE t ADD PARTITION (dt='2024-01-01') LOCATION 's3://b/x/'"),
            Some(Ok(Ddl::AddPartitions { .. }))
        ));
        assert!(matches!(parse("CREATE EXTERNAL TABLE t (a int"), Some(Err(_))));
        assert!(matches!(
            parse("CREATE EXTERNAL TABLE t (a int) STORED AS PARQUET"),
            Some(Err(_))
        ));
    }
}
