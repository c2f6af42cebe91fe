-- The shop (MariaDB/MySQL): products, customers with personal data, orders.
CREATE TABLE IF NOT EXISTS products (
    sku         varchar(64) PRIMARY KEY,
    title       varchar(255) NOT NULL,
    price       decimal(12,2) NOT NULL,
    stock_qty   int NOT NULL DEFAULT 0,
    updated_at  datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS customers (
    id      bigint AUTO_INCREMENT PRIMARY KEY,
    email   varchar(255) NOT NULL UNIQUE,
    name    varchar(255) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS orders (
    id           bigint AUTO_INCREMENT PRIMARY KEY,
    customer_id  bigint NOT NULL,
    created_at   datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS order_lines (
    id          bigint AUTO_INCREMENT PRIMARY KEY,
    order_id    bigint NOT NULL,
    sku         varchar(64) NOT NULL,
    qty         int NOT NULL,
    unit_price  decimal(12,2) NOT NULL,
    created_at  datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    -- Personal data: the "sales" mapping masks it before it reaches the inventory.
    customer_email  varchar(255) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT IGNORE INTO customers (email, name)
SELECT CONCAT('customer', seq, '@mail.example'), CONCAT('Customer ', seq)
FROM seq_1_to_500;
