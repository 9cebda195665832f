-- One allocation write, as the database sees it: the ceiling for PUT /allocations/{new consumer}.
-- Read the provider's generation, its inventories and current usage, look the consumer up,
-- create it, write its two allocation rows, bump the provider generation; one transaction.
-- Variables (pgbench -D): rp_min, rp_max (provider ids), project, user, consumer_type (ids).
-- The consumer's key is a random number made by pgbench: gen_random_uuid() in the WHERE
-- would be evaluated per row (it is volatile) and scan every consumer instead of the index.
\set rp random(:rp_min, :rp_max)
\set consumer_key random(1, 9000000000000000000)
BEGIN;
SELECT generation FROM resource_providers WHERE id = :rp \gset
SELECT resource_class_id, total, reserved, min_unit, max_unit, step_size, allocation_ratio
  FROM inventories WHERE resource_provider_id = :rp;
SELECT resource_class_id, SUM(used) FROM allocations
  WHERE resource_provider_id = :rp GROUP BY resource_class_id;
SELECT id, generation FROM consumers WHERE uuid = 'bench-' || :consumer_key;
INSERT INTO consumers (uuid, project_id, user_id, consumer_type_id, generation, created_at)
  VALUES ('bench-' || :consumer_key, :project, :user, :consumer_type, 1, now())
  RETURNING id AS consumer \gset
INSERT INTO allocations (consumer_id, resource_provider_id, resource_class_id, used, created_at)
  VALUES (:consumer, :rp, 0, 1, now()), (:consumer, :rp, 1, 64, now());
UPDATE resource_providers SET generation = generation + 1
  WHERE id = :rp AND generation = :generation;
END;
