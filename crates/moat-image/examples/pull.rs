//! `cargo run --example pull -- ROOT REFERENCE`: the library call behind `moat image pull`,
//! for benchmarking the store while the `moat` binary cannot be built.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, root, reference] = args.as_slice() else {
        return Err("usage: pull ROOT REFERENCE".into());
    };
    let store = moat_image::Store::open(Path::new(root))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let image = runtime.block_on(store.pull(reference, &moat_image::PullOptions::default()))?;
    println!("{} {}", image.reference, image.config_digest);
    Ok(())
}
