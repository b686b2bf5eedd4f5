diesel::table! {
    orders (id) {
        id -> BigInt,
        user_id -> BigInt,
        price -> BigInt,
        status -> Text,
        failure_reason -> Nullable<Text>,
        notified_at -> Nullable<Timestamp>,
        lease_until -> Nullable<Timestamp>,
        lease_token -> Nullable<BigInt>,
        attempts -> Integer,
        letter_refusal -> Nullable<Text>,
        refunded -> Nullable<BigInt>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}
