//! `tandem-demo-load`: the live workload of `make demo`.
//!
//! Writes to both demo databases the way their applications would, at a modest, steady
//! rate, until SIGINT/SIGTERM:
//! - **sales in the shop** (MariaDB): an order, its order line and the product's
//!   `stock_qty` lowered, in one transaction — tandem carries the stock change to the
//!   inventory (`delta`) and the order line to `sales`;
//! - **goods receipts in the warehouse** (PostgreSQL): `items.on_hand` raised, with a
//!   `stock_movements` row, in one transaction;
//! - **price changes in the warehouse**: `items.unit_price` moved by a few percent;
//! - **conflicting edits**: the same product changed on both sides at the same moment —
//!   the warehouse receives goods while the shop sells one and tries a discount. tandem's
//!   resolver must add both stock changes up (`delta`) and keep the warehouse's price
//!   (`prefer:inventory`).
//!
//! Most operations hit a small set of "hot" products so that their stock visibly moves;
//! every few seconds a line reports what was done and the first hot product's stock as
//! each database sees it, which is the demo's proof that the two stay in step.
//!
//! Errors (a server restarting, a lock timeout) are counted and reported, never fatal:
//! the demo keeps going, and the PostgreSQL connection is re-opened when it was lost (the
//! MariaDB pool does that by itself).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use mysql_async::prelude::Queryable;
use mysql_async::TxOpts;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::signal::unix::{signal, SignalKind};

/// How many products most of the workload concentrates on.
const HOT_PRODUCTS: usize = 20;
/// Share of operations on the hot products.
const HOT_SHARE: f64 = 0.7;
/// Customers the demo schema creates (`customers` ids 1..=500).
const CUSTOMERS: u64 = 500;

#[derive(Parser)]
#[command(about = "The live workload of `make demo`: sales, goods receipts, price changes")]
struct Args {
    /// The inventory database (PostgreSQL).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:55432/inventory")]
    pg: String,
    /// The shop database (MariaDB/MySQL).
    #[arg(long, default_value = "mysql://root@127.0.0.1:53306/retail")]
    mysql: String,
    /// Operations per second (a sale writes 3 rows, the others 1 or 2).
    #[arg(long, default_value_t = 12.0)]
    rate: f64,
    /// Share of operations that are conflicting edits of one product on both sides.
    #[arg(long, default_value_t = 0.05)]
    conflicts: f64,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    duration: Option<u64>,
    /// Seconds between report lines.
    #[arg(long, default_value_t = 5)]
    report_every: u64,
    /// Seed of the random choices, for a repeatable run.
    #[arg(long)]
    seed: Option<u64>,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Default)]
struct Counts {
    sales: u64,
    sold_out: u64,
    receipts: u64,
    price_changes: u64,
    conflicting_edits: u64,
    errors: u64,
}

/// The inventory connection, re-opened after it was lost.
struct Inventory {
    url: String,
    client: Option<tokio_postgres::Client>,
}

impl Inventory {
    async fn client(&mut self) -> Result<&mut tokio_postgres::Client, Error> {
        if self.client.as_ref().map_or(true, |c| c.is_closed()) {
            let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    eprintln!("load: inventory connection ended: {e}");
                }
            });
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| "no inventory connection".into())
    }

    async fn receipt(&mut self, sku: &str, qty: i32) -> Result<(), Error> {
        let c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(
            "UPDATE items SET on_hand = on_hand + $2, updated_at = now() WHERE sku = $1",
            &[&sku, &qty],
        )
        .await?;
        tx.execute(
            "INSERT INTO stock_movements (sku, delta, reason) VALUES ($1, $2, 'goods receipt')",
            &[&sku, &qty],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn price_change(&mut self, sku: &str, percent: i32) -> Result<(), Error> {
        self.client()
            .await?
            .execute(
                "UPDATE items SET unit_price = greatest(0.50, round(unit_price * (100 + $2) / 100, 2)), \
                 updated_at = now() WHERE sku = $1",
                &[&sku, &percent],
            )
            .await?;
        Ok(())
    }

    async fn on_hand(&mut self, sku: &str) -> Result<Option<i32>, Error> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT on_hand FROM items WHERE sku = $1", &[&sku])
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn skus(&mut self) -> Result<Vec<String>, Error> {
        let rows = self
            .client()
            .await?
            .query("SELECT sku FROM items ORDER BY sku", &[])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// One sale in the shop; `false` when the product is unknown there or sold out.
async fn sale(shop: &mysql_async::Pool, sku: &str, qty: i32, customer: u64) -> Result<bool, Error> {
    let mut conn = shop.get_conn().await?;
    let mut tx = conn.start_transaction(TxOpts::default()).await?;
    let product: Option<(String, i32)> = tx
        .exec_first(
            "SELECT price, stock_qty FROM products WHERE sku = ? FOR UPDATE",
            (sku,),
        )
        .await?;
    let Some((price, stock)) = product else {
        return Ok(false);
    };
    if stock < qty {
        return Ok(false);
    }
    tx.exec_drop("INSERT INTO orders (customer_id) VALUES (?)", (customer,))
        .await?;
    let order = tx.last_insert_id().ok_or("no order id")?;
    tx.exec_drop(
        "INSERT INTO order_lines (order_id, sku, qty, unit_price) VALUES (?, ?, ?, ?)",
        (order, sku, qty, price),
    )
    .await?;
    tx.exec_drop(
        "UPDATE products SET stock_qty = stock_qty - ?, updated_at = NOW(6) WHERE sku = ?",
        (qty, sku),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// The shop's half of a conflicting edit: one sold over the counter and a discount the
/// inventory (which owns prices) will overrule.
async fn shop_edit(shop: &mysql_async::Pool, sku: &str) -> Result<(), Error> {
    let mut conn = shop.get_conn().await?;
    conn.exec_drop(
        "UPDATE products SET stock_qty = greatest(stock_qty - 1, 0), \
         price = greatest(0.50, price - 1.00), updated_at = NOW(6) WHERE sku = ?",
        (sku,),
    )
    .await?;
    Ok(())
}

async fn stock_qty(shop: &mysql_async::Pool, sku: &str) -> Result<Option<i32>, Error> {
    let mut conn = shop.get_conn().await?;
    Ok(conn
        .exec_first("SELECT stock_qty FROM products WHERE sku = ?", (sku,))
        .await?)
}

fn show(v: &Result<Option<i32>, Error>) -> String {
    match v {
        Ok(Some(n)) => n.to_string(),
        Ok(None) => "-".into(),
        Err(_) => "?".into(),
    }
}

struct Load {
    args: Args,
    inventory: Inventory,
    shop: mysql_async::Pool,
    rng: StdRng,
    skus: Vec<String>,
    counts: Counts,
    last_error: Option<Instant>,
}

impl Load {
    fn pick_sku(&mut self) -> String {
        let hot = self.skus.len().min(HOT_PRODUCTS);
        let n = if self.rng.gen_bool(HOT_SHARE) {
            hot
        } else {
            self.skus.len()
        };
        let i = self.rng.gen_range(0..n.max(1));
        self.skus.get(i).cloned().unwrap_or_default()
    }

    fn failed(&mut self, what: &str, e: &Error) {
        self.counts.errors += 1;
        // One line per second at most: a server that is down should not flood the log.
        if self
            .last_error
            .map_or(true, |t| t.elapsed() > Duration::from_secs(1))
        {
            eprintln!("load: {what} failed: {e}");
            self.last_error = Some(Instant::now());
        }
    }

    async fn step(&mut self) {
        let sku = self.pick_sku();
        let r: f64 = self.rng.gen();
        let conflicts = self.args.conflicts.clamp(0.0, 1.0);
        if r < conflicts {
            let qty = self.rng.gen_range(2..=6);
            let (wh, sh) = tokio::join!(
                self.inventory.receipt(&sku, qty),
                shop_edit(&self.shop, &sku)
            );
            match wh.and(sh) {
                Ok(()) => self.counts.conflicting_edits += 1,
                Err(e) => self.failed("conflicting edit", &e),
            }
        } else if r < conflicts + 0.55 {
            let qty = self.rng.gen_range(1..=3);
            let customer = self.rng.gen_range(1..=CUSTOMERS);
            match sale(&self.shop, &sku, qty, customer).await {
                Ok(true) => self.counts.sales += 1,
                Ok(false) => self.counts.sold_out += 1,
                Err(e) => self.failed("sale", &e),
            }
        } else if r < conflicts + 0.80 {
            let qty = self.rng.gen_range(1..=8);
            match self.inventory.receipt(&sku, qty).await {
                Ok(()) => self.counts.receipts += 1,
                Err(e) => self.failed("goods receipt", &e),
            }
        } else {
            let percent = self.rng.gen_range(-5..=6);
            match self.inventory.price_change(&sku, percent).await {
                Ok(()) => self.counts.price_changes += 1,
                Err(e) => self.failed("price change", &e),
            }
        }
    }

    async fn report(&mut self, started: Instant) {
        let sku = self.skus.first().cloned().unwrap_or_default();
        let inv = self.inventory.on_hand(&sku).await;
        let shop = stock_qty(&self.shop, &sku).await;
        let c = &self.counts;
        let sold_out = if c.sold_out > 0 {
            format!(" ({} sold out)", c.sold_out)
        } else {
            String::new()
        };
        println!(
            "load: {:.0}s {} sales{sold_out}, {} receipts, {} price changes, {} conflicting \
             edits, {} errors | {sku} stock: inventory {}, shop {}",
            started.elapsed().as_secs_f64(),
            c.sales,
            c.receipts,
            c.price_changes,
            c.conflicting_edits,
            c.errors,
            show(&inv),
            show(&shop),
        );
    }
}

async fn run(args: Args) -> Result<(), Error> {
    let mut inventory = Inventory {
        url: args.pg.clone(),
        client: None,
    };
    let skus = inventory.skus().await?;
    if skus.is_empty() {
        return Err("the inventory has no items; load configs/demo-inventory.sql first".into());
    }
    let shop = mysql_async::Pool::new(mysql_async::Opts::from_url(&args.mysql)?);
    let rng = match args.seed {
        Some(s) => StdRng::seed_from_u64(s),
        None => StdRng::from_entropy(),
    };
    let rate = if args.rate.is_finite() && args.rate > 0.0 {
        args.rate
    } else {
        return Err("--rate must be a positive number".into());
    };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut report = tokio::time::interval(Duration::from_secs(args.report_every.max(1)));
    let deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs(d));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    eprintln!(
        "load: {} products ({} hot), {rate} operations/s; Ctrl-C stops",
        skus.len(),
        skus.len().min(HOT_PRODUCTS)
    );
    let mut load = Load {
        args,
        inventory,
        shop,
        rng,
        skus,
        counts: Counts::default(),
        last_error: None,
    };
    let started = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => load.step().await,
            _ = report.tick() => load.report(started).await,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    load.report(started).await;
    let _ = load.shop.disconnect().await;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::FAILURE
        }
    }
}
