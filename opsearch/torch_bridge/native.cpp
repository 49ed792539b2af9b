// Native (C++) dispatcher kernels for torch.ops.opsearch.<name>: see opsearch/torch_bridge/native.py.
//
// Per operator, two boxed kernels registered at run time (the operators themselves are defined
// in Python by opsearch/torch_bridge/library.py):
//   CPU:      shapes, dtypes and attribute values -> a plan (TVM function handle, output shape
//             and dtype, constant tensors); then at::empty for the output and one
//             TVMFFIFunctionCall with DLTensor views of the inputs (zero-copy). A call with no
//             plan yet goes to opsearch::_slow_<name> (the Python kernel), which picks the kernel,
//             computes the output and hands the plan back through opsearch::_native_set_plan.
//   Autograd: no input needing a gradient -> redispatch below autograd (the CPU kernel above);
//             otherwise opsearch::_autograd_<name> (Python: the operator's autograd.Function).
// Parallel loops: a kernel library's parallel-launch hook (__TVMBackendParallelLaunch, which TVM
// points at its own thread pool when it loads the library) can be pointed at parallel_launch
// below, which runs the loop's tasks on PyTorch's intra-op pool (at::parallel_for). Inside a
// model, PyTorch's pool threads keep spinning after each PyTorch op, and TVM's separate pool
// then waits for a core; one pool for both removes that contention.
// The TVM function objects stay owned by Python (opsearch.torch_bridge.library keeps every kernel it
// handed over alive); opsearch::_native_clear drops every plan before Python forgets them.

#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <ATen/ops/empty.h>
#include <c10/core/GradMode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <torch/library.h>
#include <tvm/ffi/c_api.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

constexpr uintptr_t kAlign = 64;  // TVM kernels assume 64-byte aligned buffers

struct Plan {
  void* func = nullptr;  // TVMFFIObjectHandle of the compiled kernel's function
  std::vector<at::Tensor> constants;
  std::vector<int64_t> out_shape;
  at::ScalarType out_dtype = at::kFloat;
};

struct OpState {
  std::string name;
  int n_tensors = 0;
  std::shared_mutex mu;
  std::unordered_map<std::string, std::shared_ptr<const Plan>> plans;
  std::optional<c10::OperatorHandle> slow, grad;
};

std::mutex g_registry_mu;
std::unordered_map<std::string, std::unique_ptr<OpState>> g_ops;
std::vector<std::unique_ptr<torch::Library>> g_libs;
std::atomic<bool> g_bypass{false};  // Python is recording workloads: every call takes the slow path
std::atomic<int64_t> g_native_calls{0}, g_slow_calls{0}, g_parallel_launches{0};

// TVM's C ABI for parallel loops (tvm/runtime/c_backend_api.h): the compiled loop body is a
// lambda run once per task; each task derives its share of the iterations from num_task.
struct ParallelGroupEnv {
  void* sync_handle;
  int32_t num_task;
};
using ParallelLambda = int (*)(int task_id, ParallelGroupEnv* penv, void* cdata);

int parallel_launch(ParallelLambda flambda, void* cdata, int num_task) {
  g_parallel_launches.fetch_add(1, std::memory_order_relaxed);
  const int n = num_task > 0 ? num_task : (at::in_parallel_region() ? 1 : at::get_num_threads());
  ParallelGroupEnv env{nullptr, n};
  if (n <= 1) return flambda(0, &env, cdata);
  std::atomic<int> status{0};
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      int rc = flambda(static_cast<int>(task), &env, cdata);
      if (rc != 0) status.store(rc);
    }
  });
  return status.load();
}

int64_t native_parallel_launch() { return reinterpret_cast<int64_t>(&parallel_launch); }

// The plan a slow call on this thread is expected to hand back.
thread_local OpState* t_pending_op = nullptr;
thread_local const std::string* t_pending_key = nullptr;

OpState* find_op(const std::string& name) {
  std::lock_guard<std::mutex> lock(g_registry_mu);
  auto it = g_ops.find(name);
  TORCH_CHECK(it != g_ops.end(), "opsearch native: operator '", name, "' is not registered");
  return it->second.get();
}

bool dl_dtype(at::ScalarType t, DLDataType* out) {
  switch (t) {
    case at::kFloat: *out = {kDLFloat, 32, 1}; return true;
    case at::kDouble: *out = {kDLFloat, 64, 1}; return true;
    case at::kInt: *out = {kDLInt, 32, 1}; return true;
    case at::kLong: *out = {kDLInt, 64, 1}; return true;
    case at::kChar: *out = {kDLInt, 8, 1}; return true;
    case at::kByte: *out = {kDLUInt, 8, 1}; return true;
    default: return false;
  }
}

void append(std::string& key, int64_t v) { key.append(reinterpret_cast<const char*>(&v), sizeof v); }

// Shapes, dtypes and attribute values of a call: the plan's key. False if some argument is of a
// kind the native path does not handle (then the slow path runs).
bool make_key(const torch::jit::Stack& stack, size_t first, size_t n_args, int n_tensors, std::string& key) {
  key.reserve(128);
  for (size_t i = 0; i < n_args; ++i) {
    const c10::IValue& v = stack[first + i];
    if (static_cast<int>(i) < n_tensors) {
      if (v.isNone()) { append(key, -1); continue; }
      if (!v.isTensor()) return false;
      const at::Tensor& t = v.toTensor();
      if (!t.device().is_cpu() || t.layout() != at::kStrided) return false;
      append(key, static_cast<int64_t>(t.scalar_type()));
      append(key, t.dim());
      for (int64_t d : t.sizes()) append(key, d);
    } else if (v.isIntList()) {
      auto l = v.toIntList();
      append(key, -2 - static_cast<int64_t>(l.size()));
      for (int64_t d : l) append(key, d);
    } else if (v.isInt()) {
      append(key, -100); append(key, v.toInt());
    } else if (v.isBool()) {
      append(key, -101); append(key, v.toBool());
    } else if (v.isString()) {
      const auto& s = v.toStringRef();
      append(key, -102 - static_cast<int64_t>(s.size()));
      key.append(s);
    } else {
      return false;
    }
  }
  return true;
}

[[noreturn]] void raise_tvm_error(const std::string& op) {
  TVMFFIObjectHandle err = nullptr;
  TVMFFIErrorMoveFromRaised(&err);
  std::string msg = "unknown error";
  if (err != nullptr) {
    auto* cell = reinterpret_cast<const TVMFFIErrorCell*>(static_cast<const char*>(err) + sizeof(TVMFFIObject));
    msg = std::string(cell->kind.data, cell->kind.size) + ": " + std::string(cell->message.data, cell->message.size);
    TVMFFIObjectDecRef(err);
  }
  TORCH_CHECK(false, "opsearch::", op, ": the TVM kernel failed: ", msg);
}

at::Tensor run_plan(const OpState& op, const Plan& plan, torch::jit::Stack* stack, size_t first) {
  std::vector<at::Tensor> ins;
  ins.reserve(op.n_tensors + plan.constants.size() + 1);
  for (int i = 0; i < op.n_tensors; ++i) {
    const c10::IValue& v = (*stack)[first + i];
    if (v.isNone()) continue;
    at::Tensor t = v.toTensor();
    if (!t.is_contiguous()) t = t.contiguous();
    if (reinterpret_cast<uintptr_t>(t.data_ptr()) % kAlign) t = t.clone();
    ins.push_back(std::move(t));
  }
  for (const auto& c : plan.constants) ins.push_back(c);
  at::Tensor out = at::empty(plan.out_shape, at::TensorOptions().dtype(plan.out_dtype));
  ins.push_back(out);

  const size_t n = ins.size();
  std::vector<DLTensor> dl(n);
  std::vector<TVMFFIAny> args(n);
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& t = ins[i];
    DLTensor& d = dl[i];
    d.data = t.data_ptr();
    d.device = {kDLCPU, 0};
    d.ndim = static_cast<int32_t>(t.dim());
    TORCH_CHECK(dl_dtype(t.scalar_type(), &d.dtype), "opsearch::", op.name, ": unsupported dtype ", t.scalar_type());
    d.shape = const_cast<int64_t*>(t.sizes().data());
    d.strides = nullptr;
    d.byte_offset = 0;
    std::memset(&args[i], 0, sizeof(TVMFFIAny));
    args[i].type_index = kTVMFFIDLTensorPtr;
    args[i].v_ptr = &d;
  }
  TVMFFIAny result;
  std::memset(&result, 0, sizeof result);
  result.type_index = kTVMFFINone;
  if (TVMFFIFunctionCall(plan.func, args.data(), static_cast<int32_t>(n), &result) != 0) raise_tvm_error(op.name);
  if (result.type_index >= kTVMFFIStaticObjectBegin && result.v_obj != nullptr) TVMFFIObjectDecRef(result.v_obj);
  return out;
}

struct CpuKernel final : c10::OperatorKernel {
  explicit CpuKernel(OpState* op) : op_(op) {}

  void operator()(const c10::OperatorHandle& handle, c10::DispatchKeySet, torch::jit::Stack* stack) {
    const size_t n_args = handle.schema().arguments().size();
    const size_t first = stack->size() - n_args;
    std::string key;
    std::shared_ptr<const Plan> plan;
    const bool keyed = !g_bypass.load(std::memory_order_relaxed) && make_key(*stack, first, n_args, op_->n_tensors, key);
    if (keyed) {
      std::shared_lock<std::shared_mutex> lock(op_->mu);
      auto it = op_->plans.find(key);
      if (it != op_->plans.end()) plan = it->second;
    }
    if (plan) {
      at::Tensor out = run_plan(*op_, *plan, stack, first);
      torch::jit::drop(*stack, n_args);
      torch::jit::push(*stack, std::move(out));
      g_native_calls.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    // The slow path: Python picks the kernel, runs it and (when keyed) hands the plan back.
    OpState* prev_op = t_pending_op;
    const std::string* prev_key = t_pending_key;
    t_pending_op = keyed ? op_ : nullptr;
    t_pending_key = keyed ? &key : nullptr;
    try {
      at::AutoDispatchBelowAutograd guard;
      op_->slow->callBoxed(stack);
    } catch (...) {
      t_pending_op = prev_op;
      t_pending_key = prev_key;
      throw;
    }
    t_pending_op = prev_op;
    t_pending_key = prev_key;
    g_slow_calls.fetch_add(1, std::memory_order_relaxed);
  }

 private:
  OpState* op_;
};

struct AutogradKernel final : c10::OperatorKernel {
  explicit AutogradKernel(OpState* op) : op_(op) {}

  void operator()(const c10::OperatorHandle& handle, c10::DispatchKeySet ks, torch::jit::Stack* stack) {
    if (c10::GradMode::is_enabled()) {
      const size_t n_args = handle.schema().arguments().size();
      const size_t first = stack->size() - n_args;
      for (int i = 0; i < op_->n_tensors; ++i) {
        const c10::IValue& v = (*stack)[first + i];
        if (v.isTensor() && v.toTensor().requires_grad()) {
          op_->grad->callBoxed(stack);
          return;
        }
      }
    }
    at::AutoDispatchBelowAutograd guard;
    handle.redispatchBoxed(ks & c10::after_autograd_keyset, stack);
  }

 private:
  OpState* op_;
};

// opsearch::_native_register(str name, int n_tensors): install both kernels of one operator.
void native_register(const std::string& name, int64_t n_tensors) {
  auto state = std::make_unique<OpState>();
  state->name = name;
  state->n_tensors = static_cast<int>(n_tensors);
  auto& dispatcher = c10::Dispatcher::singleton();
  state->slow = dispatcher.findSchemaOrThrow(("opsearch::_slow_" + name).c_str(), "");
  state->grad = dispatcher.findSchemaOrThrow(("opsearch::_autograd_" + name).c_str(), "");
  OpState* raw = state.get();
  {
    std::lock_guard<std::mutex> lock(g_registry_mu);
    TORCH_CHECK(g_ops.find(name) == g_ops.end(), "opsearch native: '", name, "' registered twice");
    g_ops.emplace(name, std::move(state));
  }
  auto cpu = std::make_unique<torch::Library>(torch::Library::IMPL, "opsearch", c10::DispatchKey::CPU, __FILE__, __LINE__);
  cpu->impl(name.c_str(), torch::CppFunction::makeFromBoxedFunctor(std::make_unique<CpuKernel>(raw)));
  auto ad = std::make_unique<torch::Library>(torch::Library::IMPL, "opsearch", c10::DispatchKey::Autograd, __FILE__, __LINE__);
  ad->impl(name.c_str(), torch::CppFunction::makeFromBoxedFunctor(std::make_unique<AutogradKernel>(raw)));
  std::lock_guard<std::mutex> lock(g_registry_mu);
  g_libs.push_back(std::move(cpu));
  g_libs.push_back(std::move(ad));
}

// opsearch::_native_set_plan: called by the slow path (same thread) with the kernel it ran.
bool native_set_plan(const std::string& name, int64_t func, at::IntArrayRef out_shape, at::ScalarType out_dtype,
                     at::TensorList constants) {
  OpState* op = find_op(name);
  if (t_pending_op != op || t_pending_key == nullptr || func == 0) return false;
  auto plan = std::make_shared<Plan>();
  plan->func = reinterpret_cast<void*>(func);
  plan->out_shape.assign(out_shape.begin(), out_shape.end());
  plan->out_dtype = out_dtype;
  DLDataType unused;
  if (!dl_dtype(out_dtype, &unused)) return false;
  for (const auto& c : constants) {
    if (!c.device().is_cpu() || !c.is_contiguous() || reinterpret_cast<uintptr_t>(c.data_ptr()) % kAlign ||
        !dl_dtype(c.scalar_type(), &unused))
      return false;
    plan->constants.push_back(c);
  }
  std::unique_lock<std::shared_mutex> lock(op->mu);
  if (op->plans.size() >= 4096) op->plans.clear();
  op->plans[*t_pending_key] = std::move(plan);
  t_pending_key = nullptr;  // one plan per slow call
  return true;
}

// opsearch::_native_clear(): forget every plan (kernels about to be dropped or replaced).
void native_clear() {
  std::lock_guard<std::mutex> lock(g_registry_mu);
  for (auto& [_, op] : g_ops) {
    std::unique_lock<std::shared_mutex> l(op->mu);
    op->plans.clear();
  }
}

void native_bypass(bool on) { g_bypass.store(on); }

std::vector<int64_t> native_stats() {
  int64_t plans = 0;
  std::lock_guard<std::mutex> lock(g_registry_mu);
  for (auto& [_, op] : g_ops) {
    std::shared_lock<std::shared_mutex> l(op->mu);
    plans += static_cast<int64_t>(op->plans.size());
  }
  return {g_native_calls.load(), g_slow_calls.load(), plans, g_parallel_launches.load()};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(opsearch, m) {
  m.def("_native_register(str name, int n_tensors) -> ()", &native_register);
  m.def("_native_set_plan(str name, int func, int[] out_shape, ScalarType out_dtype, Tensor[] constants) -> bool",
        &native_set_plan);
  m.def("_native_clear() -> ()", &native_clear);
  m.def("_native_bypass(bool on) -> ()", &native_bypass);
  m.def("_native_stats() -> int[]", &native_stats);
  m.def("_native_parallel_launch() -> int", &native_parallel_launch);
}
