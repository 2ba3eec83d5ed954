// face-api's own FaceRecognitionNet (tfjs, CPU backend) on raw 150x150 RGB uint8 images.
// usage: node reference.js PACKAGE_DIR INPUTS_BIN NAMES_JSON OUT_JSON
//   PACKAGE_DIR: the unpacked `npm pack @vladmandic/face-api@1.7.15` (its `package/` folder),
//                with @tensorflow/tfjs@4.22.0 and @tensorflow/tfjs-backend-wasm@4.22.0
//                installed in a node_modules above it (see README.md beside this file).
//   INPUTS_BIN:  N x 150 x 150 x 3 uint8, C order; NAMES_JSON: {"names": [N names]}.
const fs = require('fs');
const path = require('path');

const SIZE = 150 * 150 * 3;
const [pkgDir, inputsBin, namesJson, outJson] = process.argv.slice(2);
const faceapi = require(path.resolve(pkgDir, 'dist/face-api.node-wasm.js'));
const { tf } = faceapi; // the tfjs instance face-api itself runs on

async function main() {
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.faceRecognitionNet.loadFromDisk(path.join(pkgDir, 'model'));
  const { names } = JSON.parse(fs.readFileSync(namesJson, 'utf8'));
  const bytes = fs.readFileSync(inputsBin);
  if (bytes.length !== names.length * SIZE) throw new Error('inputs and names disagree');
  const descriptors = {};
  for (let i = 0; i < names.length; i += 1) {
    const pixels = Int32Array.from(bytes.subarray(i * SIZE, (i + 1) * SIZE));
    const image = tf.tensor3d(pixels, [150, 150, 3], 'int32');
    descriptors[names[i]] = Array.from(await faceapi.computeFaceDescriptor(image));
    image.dispose();
  }
  const result = {
    faceapi: faceapi.version, tfjs: tf.version.tfjs, backend: tf.getBackend(),
    node: process.version, descriptors,
  };
  fs.writeFileSync(outJson, `${JSON.stringify(result)}\n`);
}

main().catch((err) => { console.error(err); process.exit(1); });
