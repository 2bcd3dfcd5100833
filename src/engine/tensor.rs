//! [`Tensor`]: a shape (row-major, PyTorch order), shared storage on the CPU or the GPU, and, when it was
//! made by an op while gradients are recorded, the autograd node that made it.
//!
//! Tensors are cheap handles (`Arc`); their data is never mutated by ops (every op writes a new tensor), except
//! by the optimizer, which updates parameters in place. Creation, device moves and readback live here; the
//! ops are `impl Tensor` blocks in `engine/ops/*.rs`, one file per op.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};

use crate::engine::gpu::Gpu;
use crate::engine::shape;
use crate::engine::storage::{Device, GpuStorage, Storage};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The backward half of an op: the gradient of each input given the output's gradient. Ops implement it;
/// `engine::autograd` records it on the op's output (a [`Node`]) and walks the nodes in reverse.
pub trait Backward: Send + Sync {
    /// Op name, for messages.
    fn name(&self) -> &'static str;
    /// One entry per input (`None`: no gradient for that input). `grad` has the output's shape.
    fn backward(&self, grad: &Tensor) -> Vec<Option<Tensor>>;
    /// [`Backward::backward`] given the gradient itself, which the backward walk no longer needs: an op
    /// that can let it go before it finishes (a recomputed node's inner walk, `engine::recompute`)
    /// overrides this.
    fn backward_owned(&self, grad: Tensor) -> Vec<Option<Tensor>> {
        self.backward(&grad)
    }
}

/// What an op leaves on its output while gradients are recorded: its backward (with what it saved) and the
/// edges to its inputs.
///
/// The node holds no input's data: an input's storage lives only as long as some backward saved it (or the
/// caller holds it), as in PyTorch, so intermediates no backward needs are freed during the forward pass.
/// The backward walk takes the op's backward out of the node when it has run (`take_backward`), which frees
/// its saved tensors at once: a graph is walked once (PyTorch's default `retain_graph=False`).
pub struct Node {
    name: &'static str,
    backward: Mutex<Option<Box<dyn Backward>>>,
    /// The op's inputs, in the order its backward returns their gradients.
    pub inputs: Vec<Edge>,
}

impl Node {
    /// A node for `backward` over `inputs`.
    pub(crate) fn new(backward: Box<dyn Backward>, inputs: &[&Tensor]) -> Node {
        Node {
            name: backward.name(),
            backward: Mutex::new(Some(backward)),
            inputs: inputs.iter().map(|t| Edge::to(t)).collect(),
        }
    }

    /// The op's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The op's backward, once (the walk drops it, and with it the saved tensors, after running it).
    pub(crate) fn take_backward(&self) -> Option<Box<dyn Backward>> {
        self.backward.lock().unwrap().take()
    }
}

/// An edge of the autograd graph: what the backward walk needs of an op's input, without its data. A leaf
/// that requires a gradient keeps its handle (its `.grad()` slot is filled at the end of the walk; leaves are
/// parameters or inputs the caller holds anyway).
#[derive(Clone)]
pub struct Edge {
    /// The input's id.
    pub id: u64,
    /// The input's shape.
    pub shape: Vec<usize>,
    /// Whether it requires a gradient.
    pub requires_grad: bool,
    /// The node that made it (`None`: a leaf).
    pub node: Option<Arc<Node>>,
    /// The leaf itself, when it is one that requires a gradient.
    pub leaf: Option<Tensor>,
}

impl Edge {
    /// The edge to `t`.
    pub fn to(t: &Tensor) -> Edge {
        let node = t.node().cloned();
        Edge {
            id: t.id(),
            shape: t.shape().to_vec(),
            requires_grad: t.requires_grad(),
            leaf: (node.is_none() && t.requires_grad()).then(|| t.clone()),
            node,
        }
    }
}

/// A tensor handle. Cloning shares the data and the autograd history.
#[derive(Clone)]
pub struct Tensor(Arc<Inner>);

struct Inner {
    id: u64,
    shape: Vec<usize>,
    storage: Arc<Storage>,
    node: Option<Arc<Node>>,
    requires_grad: bool,
    grad: Mutex<Option<Tensor>>,
    /// How to make this tensor's values again (`engine::recompute`), when it is cheap to.
    recipe: OnceLock<Recipe>,
}

/// A way to compute a tensor's values again from tensors that are kept anyway (`engine::recompute`).
pub type Recipe = Arc<dyn Fn() -> Tensor + Send + Sync>;

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data = self.to_vec();
        let head: Vec<f32> = data.iter().take(8).copied().collect();
        write!(
            f,
            "Tensor(id={}, shape={:?}, device={:?}, requires_grad={}, data[..{}]={:?})",
            self.id(),
            self.shape(),
            self.device(),
            self.requires_grad(),
            head.len(),
            head
        )
    }
}

impl Tensor {
    /// A new handle (fresh id) over `storage`, made by `node` when there is one.
    pub(crate) fn wrap(
        shape: Vec<usize>,
        storage: Arc<Storage>,
        node: Option<Arc<Node>>,
        requires_grad: bool,
    ) -> Self {
        Tensor(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shape,
            storage,
            node,
            requires_grad,
            grad: Mutex::new(None),
            recipe: OnceLock::new(),
        }))
    }

    /// The recipe that makes this tensor's values again, if it has one.
    pub(crate) fn recipe(&self) -> Option<&Recipe> {
        self.0.recipe.get()
    }

    /// Gives this tensor a recipe (`engine::recompute`); a second one is ignored.
    pub(crate) fn set_recipe(&self, recipe: Recipe) {
        let _ = self.0.recipe.set(recipe);
    }

    /// A tensor holding `data` (row-major, `shape`), on `device`. Panics when the length does not match.
    pub fn from_vec(data: Vec<f32>, shape: &[usize], device: Device) -> Tensor {
        assert_eq!(
            data.len(),
            shape::numel(shape),
            "Tensor::from_vec: expected {} values for shape {shape:?}, got {}",
            shape::numel(shape),
            data.len()
        );
        let storage = match device {
            Device::Cpu => Storage::Cpu(RwLock::new(data)),
            Device::Gpu => {
                let gpu =
                    Gpu::get().unwrap_or_else(|e| panic!("Tensor::from_vec on Device::Gpu: {e}"));
                let g = GpuStorage::alloc(gpu, data.len(), "Tensor::from_vec");
                gpu.write_buffer(g.buffer(), bytemuck::cast_slice(&data));
                Storage::Gpu(g)
            }
        };
        Tensor::wrap(shape.to_vec(), Arc::new(storage), None, false)
    }

    /// A tensor of `shape` filled with `value`.
    pub fn full(shape: &[usize], value: f32, device: Device) -> Tensor {
        Tensor::from_vec(vec![value; shape::numel(shape)], shape, device)
    }

    /// Zeros.
    pub fn zeros(shape: &[usize], device: Device) -> Tensor {
        match device {
            Device::Cpu => Tensor::full(shape, 0.0, device),
            Device::Gpu => {
                let gpu =
                    Gpu::get().unwrap_or_else(|e| panic!("Tensor::zeros on Device::Gpu: {e}"));
                let n = shape::numel(shape);
                let g = GpuStorage::alloc(gpu, n, "Tensor::zeros");
                let bytes = (4 * n as u64).div_ceil(4) * 4;
                if bytes > 0 {
                    gpu.clear(g.buffer(), bytes);
                }
                Tensor::from_storage(shape, Storage::Gpu(g))
            }
        }
    }

    /// Ones.
    pub fn ones(shape: &[usize], device: Device) -> Tensor {
        Tensor::full(shape, 1.0, device)
    }

    /// A scalar (shape `[]`).
    pub fn scalar(v: f32, device: Device) -> Tensor {
        Tensor::from_vec(vec![v], &[], device)
    }

    /// Uniform values in `[lo, hi)` from a seeded generator (same values on every machine).
    pub fn rand_uniform(shape: &[usize], lo: f32, hi: f32, seed: u64, device: Device) -> Tensor {
        let mut rng = crate::engine::rng::Rng::new(seed);
        let data = (0..shape::numel(shape))
            .map(|_| lo + (hi - lo) * rng.next_f32())
            .collect();
        Tensor::from_vec(data, shape, device)
    }

    /// Wraps freshly computed storage (no autograd history).
    pub fn from_storage(shape: &[usize], storage: Storage) -> Tensor {
        Tensor::wrap(shape.to_vec(), Arc::new(storage), None, false)
    }

    /// Unique id (autograd bookkeeping).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The shape, PyTorch order.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.0.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        shape::numel(&self.0.shape)
    }

    /// CPU or GPU.
    pub fn device(&self) -> Device {
        self.0.storage.device()
    }

    /// The storage.
    pub fn storage(&self) -> &Storage {
        &self.0.storage
    }

    /// Host data of a CPU tensor (panics for GPU tensors, naming `op`).
    pub fn cpu_data(&self, op: &str) -> RwLockReadGuard<'_, Vec<f32>> {
        match &*self.0.storage {
            Storage::Cpu(v) => v.read().unwrap(),
            Storage::Gpu(_) => panic!("{op}: expected a CPU tensor, got a GPU tensor"),
        }
    }

    /// The GPU storage (panics for CPU tensors, naming `op`).
    pub fn gpu_storage(&self, op: &str) -> &GpuStorage {
        self.0.storage.gpu(op)
    }

    /// The data, copied to the host (GPU tensors: submits pending work and waits).
    pub fn to_vec(&self) -> Vec<f32> {
        self.0.storage.to_vec(self.numel())
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> f32 {
        assert_eq!(
            self.numel(),
            1,
            "item: expected one element, got shape {:?}",
            self.shape()
        );
        self.to_vec()[0]
    }

    /// A copy on `device` (no autograd history; a leaf that requires grad stays one).
    pub fn to_device(&self, device: Device) -> Tensor {
        let t = Tensor::from_vec(self.to_vec(), self.shape(), device);
        if self.requires_grad() && self.0.node.is_none() {
            t.requires_grad_()
        } else {
            t
        }
    }

    /// Whether gradients flow to this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// A leaf sharing this storage that requires a gradient (a trainable parameter).
    pub fn requires_grad_(&self) -> Tensor {
        Tensor::wrap(self.0.shape.clone(), self.0.storage.clone(), None, true)
    }

    /// The same data, cut from the autograd history (no gradient flows through it).
    pub fn detach(&self) -> Tensor {
        Tensor::wrap(self.0.shape.clone(), self.0.storage.clone(), None, false)
    }

    /// The accumulated gradient of a leaf, if any.
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.lock().unwrap().clone()
    }

    /// Forgets the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.0.grad.lock().unwrap() = None;
    }

    /// Replaces the accumulated gradient (used by autograd).
    pub(crate) fn set_grad(&self, g: Option<Tensor>) {
        *self.0.grad.lock().unwrap() = g;
    }

    /// Whether this is the only handle to the tensor and to its storage (no clone, no view, no op's saved
    /// copy): an op given it by value may then write over it (`Tensor::relu_owned`).
    pub(crate) fn is_sole_handle(&self) -> bool {
        Arc::strong_count(&self.0) == 1 && Arc::strong_count(&self.0.storage) == 1
    }

    /// The shared storage (for views that share it, see `engine::autograd`).
    pub(crate) fn shared_storage(&self) -> Arc<Storage> {
        self.0.storage.clone()
    }

    /// The autograd node that made this tensor.
    pub(crate) fn node(&self) -> Option<&Arc<Node>> {
        self.0.node.as_ref()
    }

    /// Panics unless every tensor is on the same device; returns it.
    pub fn same_device(op: &str, ts: &[&Tensor]) -> Device {
        let d = ts[0].device();
        for t in ts {
            assert_eq!(
                t.device(),
                d,
                "{op}: expected every input on {d:?}, got one on {:?}",
                t.device()
            );
        }
        d
    }

    /// A new tensor with the given data on this tensor's device.
    pub fn new_like(&self, data: Vec<f32>, shape: &[usize]) -> Tensor {
        Tensor::from_vec(data, shape, self.device())
    }

    /// Output storage for an op producing `data` on the CPU.
    pub fn cpu_storage(data: Vec<f32>) -> Storage {
        Storage::Cpu(RwLock::new(data))
    }
}
