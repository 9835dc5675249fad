//! `cargo bench -p factoryos-wire`: the same measurement as `factoryos bench wire`.

use factoryos_wire::bench::{run, WireBenchConfig};

fn main() {
    // `cargo test --benches` runs this too: keep that invocation short.
    let quick = std::env::args().any(|a| a == "--test" || a == "--list");
    let config = if quick {
        WireBenchConfig {
            messages: 1_000,
            rtt_samples: 50,
        }
    } else {
        WireBenchConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(&config, |_, _, _| {})) {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("wire benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
