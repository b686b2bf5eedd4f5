diesel::table! {
    notifications (id) {
        id -> BigInt,
        user_id -> BigInt,
        order_id -> BigInt,
        kind -> Text,
        email -> Text,
        subject -> Text,
        body -> Text,
        created_at -> Timestamp,
    }
}
