DROP TABLE sign_in_failures;
ALTER TABLE users DROP COLUMN password_hash;
