//! `gaze layers`: every tap name of a model with its output shape.

use anyhow::Result;
use clap::Args as ClapArgs;
use gaze_engine::layer_shapes;
use serde::Serialize;

use crate::model::ModelArgs;
use crate::write_stdout;

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Layer {
    name: String,
    shape: Vec<usize>,
}

pub fn run(args: Args) -> Result<()> {
    let model = args.model.load()?;
    let layers: Vec<Layer> =
        layer_shapes(model.as_ref(), None)?.into_iter().map(|l| Layer { name: l.name, shape: l.shape }).collect();
    if args.json {
        let [c, h, w] = model.input_shape();
        let out = serde_json::json!({
            "model": model.kind().name(),
            "input_shape": [1, c, h, w],
            "layers": layers,
        });
        write_stdout(&format!("{}\n", serde_json::to_string_pretty(&out)?))?;
    } else {
        let width = layers.iter().map(|l| l.name.len()).max().unwrap_or(0);
        let table: String = layers.iter().map(|l| format!("{:width$}  {:?}\n", l.name, l.shape)).collect();
        write_stdout(&table)?;
    }
    // A reader that closed the pipe early (`| head`) is no failure: there is nothing left to do.
    Ok(())
}
