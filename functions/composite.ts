// One FunctionRuntime over both engines, for the FRI server: the process engine
// (ProcessFunctionRuntime) and the vm engine (VmFunctions). Calls are routed by what they name:
// engine "vm", a vm seed or instance id, or a function with runtime "vm" go to the vm side;
// everything else to the process side. Lists are merged. Function names are unique across both.
import { AlreadyExists } from '../sys/errors.js';
import type {
  Engine, ForkTarget, FunctionInfo, FunctionRuntime, FunctionSpec, InstanceInfo, InvokeOptions, InvokeResult, SeedInfo,
} from '../protocols/fri/types.js';
import type { VmFunctions } from './vm-functions.js';

export class CompositeFunctionRuntime implements FunctionRuntime {
  constructor(readonly process: FunctionRuntime, readonly vm: VmFunctions) {}

  create(engine: Engine): Promise<SeedInfo> {
    return engine === 'vm' ? this.vm.create(engine) : this.process.create(engine);
  }

  fork(seedId: string, target: ForkTarget): Promise<InstanceInfo | SeedInfo> {
    return this.vm.hasSeed(seedId) ? this.vm.fork(seedId, target) : this.process.fork(seedId, target);
  }

  activate(instanceId: string, event: string): Promise<InvokeResult> {
    return this.vm.hasInstance(instanceId) ? this.vm.activate(instanceId, event) : this.process.activate(instanceId, event);
  }

  invoke(fn: string, event: string, opts?: InvokeOptions): Promise<InvokeResult> {
    return this.vm.hasFunction(fn) ? this.vm.invoke(fn, event, opts) : this.process.invoke(fn, event, opts);
  }

  destroy(instanceId: string): Promise<void> {
    return this.vm.hasInstance(instanceId) ? this.vm.destroy(instanceId) : this.process.destroy(instanceId);
  }

  listSeeds(): SeedInfo[] {
    return [...this.process.listSeeds(), ...this.vm.listSeeds()];
  }

  deleteSeed(seedId: string): Promise<void> {
    return this.vm.hasSeed(seedId) ? this.vm.deleteSeed(seedId) : this.process.deleteSeed(seedId);
  }

  listInstances(): InstanceInfo[] {
    return [...this.process.listInstances(), ...this.vm.listInstances()];
  }

  async deploy(spec: FunctionSpec): Promise<FunctionInfo> {
    const taken = spec.language === 'vm' ? this.process.listFunctions().some((f) => f.name === spec.name) : this.vm.hasFunction(spec.name);
    if (taken) throw new AlreadyExists(`function ${spec.name} already exists; remove it first`);
    return spec.language === 'vm' ? this.vm.deploy(spec) : this.process.deploy(spec);
  }

  remove(name: string): Promise<void> {
    return this.vm.hasFunction(name) ? this.vm.remove(name) : this.process.remove(name);
  }

  logs(name: string, tailBytes?: number): Promise<string> {
    return this.vm.hasFunction(name) ? this.vm.logs(name) : this.process.logs(name, tailBytes);
  }

  listFunctions(): FunctionInfo[] {
    return [...this.process.listFunctions(), ...this.vm.listFunctions()];
  }
}
