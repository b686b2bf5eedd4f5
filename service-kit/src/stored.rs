//! States stored as text: a Rust enum on one side, a `VARCHAR` with a
//! `CHECK (... IN (...))` on the other, the same on both backends. A value
//! the enum does not know is a read error, never a default.

/// A stored value that is not one of the enum's.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("unknown {kind} '{value}' in the database")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

/// Declares a stored enum: a fieldless enum whose every value has one name,
/// the same in the database, in JSON and in the OpenAPI schema. Writes the
/// enum with its derives (`Debug`, `Clone`, `Copy`, `PartialEq`, `Eq`,
/// serde's `Serialize`/`Deserialize`, utoipa's `ToSchema`, diesel's
/// `AsExpression`/`FromSqlRow` for `Text`; the calling crate depends on
/// serde, utoipa and diesel) and implements `ALL`, `as_str`, `FromStr`,
/// `Display` and diesel's `ToSql`/`FromSql` for `Text` on both backends.
/// Doc comments on the enum and on its variants are kept; the string after
/// the name is what the error for an unknown stored value calls it:
/// `pub enum EntryKind("ledger entry kind") { Deposit => "deposit", ... }`.
#[macro_export]
macro_rules! stored_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident($kind:literal) {
            // `tt`, not `literal`: utoipa reads a variant's `rename` only
            // from a bare string token, not from a `literal` fragment.
            $($(#[$variant_meta:meta])* $variant:ident => $text:tt),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            ::serde::Serialize,
            ::serde::Deserialize,
            ::utoipa::ToSchema,
            ::diesel::expression::AsExpression,
            ::diesel::deserialize::FromSqlRow,
        )]
        #[diesel(sql_type = ::diesel::sql_types::Text)]
        $vis enum $name {
            $(
                $(#[$variant_meta])*
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored (and serialized) name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::stored::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::stored::UnknownValue { kind: $kind, value: other.to_owned() }),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<DB> ::diesel::serialize::ToSql<::diesel::sql_types::Text, DB> for $name
        where
            DB: ::diesel::backend::Backend,
            str: ::diesel::serialize::ToSql<::diesel::sql_types::Text, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut ::diesel::serialize::Output<'b, '_, DB>) -> ::diesel::serialize::Result {
                <str as ::diesel::serialize::ToSql<::diesel::sql_types::Text, DB>>::to_sql(self.as_str(), out)
            }
        }

        impl<DB> ::diesel::deserialize::FromSql<::diesel::sql_types::Text, DB> for $name
        where
            DB: ::diesel::backend::Backend,
            String: ::diesel::deserialize::FromSql<::diesel::sql_types::Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> ::diesel::deserialize::Result<Self> {
                let text = <String as ::diesel::deserialize::FromSql<::diesel::sql_types::Text, DB>>::from_sql(bytes)?;
                Ok(text.parse()?)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use diesel::prelude::*;

    crate::stored_enum! {
        enum Colour("colour") {
            Red => "red",
            DarkBlue => "dark_blue",
        }
    }

    diesel::table! { paint (id) { id -> Integer, colour -> Text } }

    #[test]
    fn names_round_trip() {
        for c in Colour::ALL {
            assert_eq!(c.as_str().parse::<Colour>(), Ok(*c));
        }
        assert_eq!(Colour::DarkBlue.to_string(), "dark_blue");
        assert_eq!(serde_json::to_value(Colour::DarkBlue).unwrap(), "dark_blue", "serialized as stored");
        assert_eq!(serde_json::from_value::<Colour>("dark_blue".into()).unwrap(), Colour::DarkBlue);
        let schema = serde_json::to_value(<Colour as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(schema["enum"], serde_json::json!(["red", "dark_blue"]), "the schema names the stored values");
        let err = "green".parse::<Colour>().unwrap_err();
        assert_eq!(err.to_string(), "unknown colour 'green' in the database");
    }

    #[test]
    fn stored_and_read_back_and_unknown_values_are_errors() {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        diesel::sql_query("CREATE TABLE paint (id INTEGER PRIMARY KEY, colour TEXT NOT NULL)")
            .execute(&mut conn)
            .unwrap();
        diesel::insert_into(paint::table)
            .values((paint::id.eq(1), paint::colour.eq(Colour::DarkBlue)))
            .execute(&mut conn)
            .unwrap();
        let read: Colour = paint::table.find(1).select(paint::colour).first(&mut conn).unwrap();
        assert_eq!(read, Colour::DarkBlue);
        let raw: String = paint::table.find(1).select(paint::colour).first(&mut conn).unwrap();
        assert_eq!(raw, "dark_blue");
        diesel::sql_query("INSERT INTO paint VALUES (2, 'green')").execute(&mut conn).unwrap();
        let unknown = paint::table.find(2).select(paint::colour).first::<Colour>(&mut conn);
        let chain = crate::problem::chain(&unknown.unwrap_err());
        assert!(chain.contains("unknown colour 'green'"), "{chain}");
    }
}
