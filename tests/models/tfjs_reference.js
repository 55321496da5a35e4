// TF.js's own outputs of a graph model on a fixed input: the oracle that tests/models/test_tfjs.py checks
// fairjax.models.convert.load_tfjs against. Run through tests/models/make_tfjs_references.py, which
// fetches the models, runs this script once per model and writes tests/models/data/tfjs_*_reference.npz:
//
//   mkdir -p ~/.cache/fairjax/tfjs-oracle && cd ~/.cache/fairjax/tfjs-oracle
//   npm install --no-audit --no-fund @tensorflow/tfjs@4.22.0     # pure-JS CPU backend, no native code
//   cd /path/to/fairjax && NODE_PATH=~/.cache/fairjax/tfjs-oracle/node_modules \
//     python tests/models/make_tfjs_references.py
//
// By hand: node tfjs_reference.js MODEL_JSON OUT_JSON BATCH LOW HIGH writes {name: {shape, data}} for
// every output node (GraphModel.outputs) of the model on BATCH images of the input's declared size
// (-1 dimensions must not occur past the batch), valued by the recipe below in [LOW, HIGH]. The same
// recipe is `reference_images` in test_tfjs.py; float32 values survive JSON exactly.
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

function recipe(shape, low, high) {  // x[b, y, x, c] from its flat index i = ((y * W) + x) * C + c
  const [batch, height, width, channels] = shape;
  const values = new Float32Array(batch * height * width * channels);
  for (let b = 0, k = 0; b < batch; b++) {
    for (let i = 0; i < height * width * channels; i++, k++) {
      const y = Math.floor(i / (width * channels));
      const c = i % channels;
      const unit = 0.5 + 0.3 * Math.sin(0.031 * i + 1.7 * b) + 0.2 * Math.sin(0.37 * y + 0.53 * c - 0.9 * b);
      values[k] = low + (high - low) * unit;
    }
  }
  return tf.tensor(values, shape, 'float32');
}

function fileHandler(modelPath) {  // tf.io handler: model.json and its .bin shards from the local disk
  return {
    load: async () => {
      const modelJson = JSON.parse(fs.readFileSync(modelPath, 'utf8'));
      return tf.io.getModelArtifactsForJSON(modelJson, async (manifest) => {
        const specs = [].concat(...manifest.map((group) => group.weights));
        const shards = [].concat(...manifest.map((group) => group.paths)).map((shard) => {
          const bytes = fs.readFileSync(path.join(path.dirname(modelPath), shard));
          return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
        });
        return [specs, tf.io.concatenateArrayBuffers(shards)];
      });
    },
  };
}

async function main() {
  const [modelPath, outPath, batch, low, high] = process.argv.slice(2);
  await tf.setBackend('cpu');
  const model = await tf.loadGraphModel(fileHandler(modelPath));
  const shape = [Number(batch), ...model.inputs[0].shape.slice(1)];
  const names = model.outputs.map((output) => output.name);
  const results = [].concat(model.execute(recipe(shape, Number(low), Number(high)), names));
  const outputs = {};
  names.forEach((name, i) => {
    outputs[name] = {shape: results[i].shape, data: Array.from(results[i].dataSync())};
  });
  fs.writeFileSync(outPath, JSON.stringify({backend: tf.getBackend(), version: tf.version.tfjs, outputs}));
}

main();
