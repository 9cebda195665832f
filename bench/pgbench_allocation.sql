-- One allocation write, as the database sees it: the ceiling for PUT /allocations/{new consumer}.
-- Read the provider's generation, its inventories and current usage, look the consumer up,
-- create it, write its two allocation rows, bump the provider generation; one transaction.
-- Variables (pgbench -D): rp_min, rp_max (provider ids), project, user, consumer_type (ids).
-- The consumer's UUID is made once, outside the WHERE: a volatile function there would be
-- evaluated per row and turn the indexed lookup into a scan of every consumer.
\set rp random(:rp_min, :rp_max)
SELECT gen_random_uuid()::text AS consumer_uuid \gset
BEGIN;
SELECT generation FROM resource_providers WHERE id = :rp \gset
SELECT resource_class_id, total, reserved, min_unit, max_unit, step_size, allocation_ratio
  FROM inventories WHERE resource_provider_id = :rp;
SELECT resource_class_id, SUM(used) FROM allocations
  WHERE resource_provider_id = :rp GROUP BY resource_class_id;
SELECT id, generation FROM consumers WHERE uuid = :'consumer_uuid';
INSERT INTO consumers (uuid, project_id, user_id, consumer_type_id, generation, created_at)
  VALUES (:'consumer_uuid', :project, :user, :consumer_type, 1, now())
  RETURNING id AS consumer \gset
INSERT INTO allocations (consumer_id, resource_provider_id, resource_class_id, used, created_at)
  VALUES (:consumer, :rp, 0, 1, now()), (:consumer, :rp, 1, 64, now());
UPDATE resource_providers SET generation = generation + 1
  WHERE id = :rp AND generation = :generation;
END;
