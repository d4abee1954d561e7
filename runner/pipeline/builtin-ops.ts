/** Registers the op vocabulary this build ships (runner/PIPELINE.md). Imported for its side effects. */
import './ops-image.js';
import './ops-crop.js';
import './ops-model.js';
import './ops-post.js';
import './ops-regions.js';
import './ops-ctc.js';
import './ops-script.js';
import './ops-preprocess.js';
import './ops-fused.js';
import './ops-detect.js';
import './ops-split.js';
