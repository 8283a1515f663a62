-- Each rotated key's old hash and the hash it was rotated to. A call made with the old key
-- before the rotation and recorded after it adds its spend to the newest hash of the chain
-- (spend_logs keep the hash the call used); the audit consumer writes a row per rotation
-- when it carries the old total over. A rotation delivered again keeps the first row.
CREATE TABLE key_rotations (
    old_hash   text        PRIMARY KEY,
    new_hash   text        NOT NULL,
    rotated_at timestamptz NOT NULL DEFAULT now()
);
