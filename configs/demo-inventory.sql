-- The inventory system (PostgreSQL): purchasing, stock on hand, sales.
CREATE TABLE IF NOT EXISTS suppliers (
    id      serial PRIMARY KEY,
    name    text NOT NULL,
    email   text
);

CREATE TABLE IF NOT EXISTS items (
    sku            text PRIMARY KEY,
    name           text NOT NULL,
    cost           numeric(12,2) NOT NULL DEFAULT 0,
    unit_price     numeric(12,2) NOT NULL,
    on_hand        integer NOT NULL DEFAULT 0,
    reorder_point  integer NOT NULL DEFAULT 10,
    supplier_id    integer REFERENCES suppliers(id),
    updated_at     timestamptz(6) NOT NULL DEFAULT now()
);
ALTER TABLE items REPLICA IDENTITY FULL;

CREATE TABLE IF NOT EXISTS purchase_orders (
    id           serial PRIMARY KEY,
    supplier_id  integer REFERENCES suppliers(id),
    sku          text REFERENCES items(sku),
    qty          integer NOT NULL,
    status       text NOT NULL DEFAULT 'draft',
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS stock_movements (
    id          bigserial PRIMARY KEY,
    sku         text NOT NULL,
    delta       integer NOT NULL,
    reason      text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);

-- Sales arrive from the shop (mapping "sales", retail->inventory).
CREATE TABLE IF NOT EXISTS sales (
    order_line_id  bigint PRIMARY KEY,
    order_id       bigint NOT NULL,
    sku            text NOT NULL,
    qty            integer NOT NULL,
    unit_price     numeric(12,2) NOT NULL,
    sold_at        timestamptz(6) NOT NULL,
    -- Masked by tandem on the way in (j***@example.com): the shop owns the address.
    customer_email text
);
ALTER TABLE sales REPLICA IDENTITY FULL;

INSERT INTO suppliers (name, email)
SELECT 'Supplier ' || g, 'orders@supplier' || g || '.example'
FROM generate_series(1, 20) g
ON CONFLICT DO NOTHING;

INSERT INTO items (sku, name, cost, unit_price, on_hand, reorder_point, supplier_id, updated_at)
SELECT 'SKU-' || lpad(g::text, 5, '0'),
       (ARRAY['Espresso beans','Tea tin','Mug','Grinder','Kettle','Filter papers','Scale','Tamper'])[1 + g % 8] || ' #' || g,
       round((2 + (g % 50))::numeric, 2),
       round((4 + (g % 50) * 1.8)::numeric, 2),
       50 + g % 100,
       10 + g % 15,
       1 + g % 20,
       now()
FROM generate_series(1, 3000) g
ON CONFLICT DO NOTHING;
