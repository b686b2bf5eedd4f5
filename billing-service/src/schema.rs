diesel::table! {
    accounts (user_id) {
        user_id -> BigInt,
        balance -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    ledger_entries (id) {
        id -> BigInt,
        user_id -> BigInt,
        kind -> Text,
        amount -> BigInt,
        balance_after -> BigInt,
        reference -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    declined_withdrawals (user_id, reference) {
        user_id -> BigInt,
        reference -> Text,
        amount -> BigInt,
        balance -> BigInt,
        created_at -> Timestamp,
        reason -> Text,
    }
}

diesel::joinable!(ledger_entries -> accounts (user_id));
diesel::allow_tables_to_appear_in_same_query!(accounts, ledger_entries, declined_withdrawals);
