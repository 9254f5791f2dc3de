# triad — build, test, bench, validate.
#
#   make            build build/triad (CPU + MPI; CUDA backend when nvcc is found)
#   make demo       the whole loop on this machine with built-in defaults (RANKS=4: on 4 ranks)
#   make test       unit tests (cmocka) + end-to-end tests under mpirun
#   make bench      speed figures (planner, simulator, trainer)
#   make validate   predictions against published runs
#   make asan       the test suite under AddressSanitizer + UBSan
#   make fuzz       every parser under libFuzzer (FUZZ_RUNS=1000000)
#   make check-gpu LOG=dir   every GPU check, on a machine with a GPU
#
# Missing Debian packages are installed with apt-get (root) on first use.

SHELL := /bin/bash
BUILD ?= build
CC ?= cc
WERROR ?= $(if $(CI),-Werror,)
OPT ?= -O2
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wundef -Wno-unused-parameter -Wno-format-truncation $(WERROR) $(OPT) -g -fopenmp
MPI_CFLAGS = $(shell mpicc --showme:compile 2>/dev/null)
MPI_LIBS = $(shell mpicc --showme:link 2>/dev/null)
BLAS_LIBS := -lopenblas
PLAN_LIBS := -lglpk -linih -lcsv -lm
CFLAGS := $(CFLAGS_BASE) $(EXTRA_CFLAGS)
LDFLAGS += -fopenmp $(EXTRA_LDFLAGS)

# ---- optional CUDA backend: a real probe, printed --------------------------
CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(CUDA_HOME)/bin/nvcc
CUDA ?= auto
ifeq ($(CUDA),emu)
  HAVE_CUDA := emu
else ifeq ($(CUDA),auto)
  HAVE_CUDA := $(shell test -x $(NVCC) && test -f $(CUDA_HOME)/include/cuda_runtime.h && \
     ( test -f $(CUDA_HOME)/include/nccl.h || test -f /usr/include/nccl.h ) && echo 1 || echo 0)
else ifeq ($(CUDA),1)
  HAVE_CUDA := $(shell test -x $(NVCC) && echo 1 || echo missing)
  ifeq ($(HAVE_CUDA),missing)
    $(error CUDA=1 but $(NVCC) was not found)
  endif
else
  HAVE_CUDA := 0
endif
NVCCFLAGS ?= -O3 -std=c++17 -gencode=arch=compute_90,code=sm_90 -Xcompiler -fopenmp -lineinfo
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublas -lcublasLt -lnccl -lstdc++

# ---- sources ----------------------------------------------------------------
# planner side: no MPI, no CUDA (the rule of the house)
PLAN_SRC := $(wildcard common/*.c costmodel/*.c planner/*.c reports/*.c)
# executor side: MPI + BLAS; CUDA-only files are *_cuda.c, comm_nccl.c, kernels/cuda/
EXEC_SRC_ALL := $(wildcard executor/*.c kernels/*.c kernels/cpu/*.c)
CUDA_ONLY_C := $(wildcard executor/comm_nccl.c executor/*_cuda.c kernels/*_cuda.c)
EXEC_SRC := $(filter-out $(CUDA_ONLY_C),$(EXEC_SRC_ALL))
CU_SRC := $(wildcard kernels/cuda/*.cu)

ifeq ($(HAVE_CUDA),1)
  EXEC_SRC += $(CUDA_ONLY_C)
  CUDA_DEFS := -DTRIAD_HAVE_CUDA=1 -I$(CUDA_HOME)/include
  CUDA_OBJ := $(CU_SRC:%.cu=$(BUILD)/%.o)
  CUDA_LINK := $(CUDA_LIBS)
else ifeq ($(HAVE_CUDA),emu)
  # CUDA=emu: the CUDA build with tests/cudaemu in place of the toolkit (the
  # kernels on the host, an emulated runtime and cuBLAS, NCCL over MPI with
  # an emulated GPU a rank): --device cuda then runs kernels/cuda on this
  # machine's CPU
  EXEC_SRC += $(CUDA_ONLY_C)
  CUDA_DEFS := -DTRIAD_HAVE_CUDA=1 -DTRIAD_CUDA_EMU=1 -Itests/cudaemu/include
  CUDA_OBJ := $(BUILD)/tests/cudaemu/kern_cuda_emu.o $(BUILD)/tests/cudaemu/cuda_emu_rt.o \
    $(BUILD)/tests/cudaemu/nccl_emu.o
  CUDA_LINK := -lstdc++
else
  CUDA_DEFS := -DTRIAD_HAVE_CUDA=0
  CUDA_OBJ :=
  CUDA_LINK :=
endif

PLAN_OBJ := $(PLAN_SRC:%.c=$(BUILD)/%.o)
EXEC_OBJ := $(EXEC_SRC:%.c=$(BUILD)/%.o)
MAIN_OBJ := $(BUILD)/triad.o

.PHONY: all deps probe test unit e2e bench validate demo asan check-gpu clean fuzz cudaemu
all: probe $(BUILD)/triad

# ---- Debian packages ---------------------------------------------------------
FUZZ_RUNS ?= 1000000
DEB_PKGS := g++ libglpk-dev libopenmpi-dev openmpi-bin libcmocka-dev libinih-dev libcsv-dev \
            libopenblas-dev gnuplot-nox python3 python3-numpy bc
deps: $(BUILD)/.deps
$(BUILD)/.deps:
	@mkdir -p $(BUILD)
	@missing=""; for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "triad: installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "triad: need root (or sudo) to apt-get install$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	fi; touch $@

probe: $(BUILD)/.deps
	@echo "triad build: CUDA backend $(if $(filter 1,$(HAVE_CUDA)),ON ($(NVCC), sm_90),$(if $(filter emu,$(HAVE_CUDA)),EMULATED on the host (tests/cudaemu),OFF (no CUDA toolkit found)))"

# ---- compile -----------------------------------------------------------------
$(BUILD)/common/%.o $(BUILD)/costmodel/%.o $(BUILD)/planner/%.o $(BUILD)/reports/%.o: CF := $(CFLAGS)
$(BUILD)/executor/%.o $(BUILD)/kernels/%.o $(BUILD)/triad.o: CF = $(CFLAGS) $(MPI_CFLAGS) $(CUDA_DEFS)

$(BUILD)/%.o: %.c $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(CC) $(CF) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.cu $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libtriad_plan.a: $(PLAN_OBJ)
	@rm -f $@; ar rcs $@ $^

$(BUILD)/libtriad_exec.a: $(EXEC_OBJ) $(CUDA_OBJ)
	@rm -f $@; ar rcs $@ $^

$(BUILD)/triad: $(MAIN_OBJ) $(BUILD)/libtriad_exec.a $(BUILD)/libtriad_plan.a
	$(CC) $(LDFLAGS) -o $@ $(MAIN_OBJ) $(BUILD)/libtriad_exec.a $(BUILD)/libtriad_plan.a \
	  $(MPI_LIBS) $(BLAS_LIBS) $(CUDA_LINK) $(PLAN_LIBS)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ---- tests -------------------------------------------------------------------
# One cmocka binary per module: tests/unit/test_<module>.c. Tests of the
# planner side link libtriad_plan only; tests named test_exec_* / test_kern_* /
# test_comm_* also link the executor side.
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
EXEC_TEST_PAT := $(BUILD)/tests/test_exec_% $(BUILD)/tests/test_kern_% $(BUILD)/tests/test_comm_%

$(filter-out $(EXEC_TEST_PAT),$(UNIT_BIN)): $(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libtriad_plan.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(BUILD)/libtriad_plan.a -lcmocka $(PLAN_LIBS) $(LDFLAGS)

$(filter $(EXEC_TEST_PAT),$(UNIT_BIN)): $(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libtriad_exec.a $(BUILD)/libtriad_plan.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(MPI_CFLAGS) $(CUDA_DEFS) -Itests/unit -o $@ $< $(BUILD)/libtriad_exec.a \
	  $(BUILD)/libtriad_plan.a -lcmocka $(MPI_LIBS) $(BLAS_LIBS) $(CUDA_LINK) $(PLAN_LIBS) $(LDFLAGS)

# The CUDA flash-attention kernels run on the host (tests/cudaemu): a
# block's threads are fibers switched at its barriers, no GPU needed.
CXX ?= g++
EMU_BIN := $(BUILD)/tests/test_flash_emu
$(EMU_BIN): tests/cudaemu/test_flash_emu.cc tests/cudaemu/cuda_emu.h kernels/cuda/flash_tc.cuh $(BUILD)/.deps
	@mkdir -p $(dir $@)
	$(CXX) -std=c++20 $(OPT) -g -Wall -Wextra $(WERROR) -pthread $(EXTRA_CFLAGS) -o $@ $< $(EXTRA_LDFLAGS)

# The whole CUDA backend on the host: kernels/cuda/kern_cuda.cu, its
# kernel<<<grid, block>>>(...) launches rewritten for the emulator (a perl
# line; #line keeps errors pointing at the .cu), compiled against
# tests/cudaemu's runtime and cuBLAS as nvcc would (cuda_runtime.h included
# first), and checked by tests/gpu/test_kern_cuda.c as on a GPU.
EMU_DIR := $(BUILD)/tests/cudaemu
EMU_CXXFLAGS = -std=c++20 $(OPT) -g -Wall -Wextra -Wno-unknown-pragmas $(WERROR) $(EXTRA_CFLAGS) -DTRIAD_CUDA_EMU=1 \
  -Itests/cudaemu/include
EMU_HDRS := tests/cudaemu/cuda_emu.h $(wildcard tests/cudaemu/include/*.h)
KERN_EMU_BIN := $(BUILD)/tests/test_kern_cuda_emu
$(EMU_DIR)/kern_cuda_emu.cc: kernels/cuda/kern_cuda.cu $(BUILD)/.deps
	@mkdir -p $(dir $@)
	@{ echo '#line 1 "$<"'; perl -pe 's/\b([A-Za-z_]\w*(?:<[^<>]*>)?)<<<(.*?)>>>\(/cuda_emu::launcher($$1, $$2).named("$$1")(/g' $<; } >$@.tmp
	@if grep -n '<<<' $@.tmp; then echo "tests/cudaemu: a launch above was not rewritten (one launch a line, its <<<...>>>( on one line)" >&2; exit 1; fi
	@mv $@.tmp $@
$(EMU_DIR)/kern_cuda_emu.o: $(EMU_DIR)/kern_cuda_emu.cc kernels/cuda/flash_tc.cuh kernels/kernels.h $(EMU_HDRS)
	$(CXX) $(EMU_CXXFLAGS) -Ikernels/cuda -include cuda_runtime.h -c $< -o $@
$(EMU_DIR)/cuda_emu_rt.o: tests/cudaemu/cuda_emu_rt.cc $(EMU_HDRS)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -c $< -o $@
$(EMU_DIR)/nccl_emu.o: tests/cudaemu/nccl_emu.cc $(EMU_HDRS)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) $(MPI_CFLAGS) -c $< -o $@
$(EMU_DIR)/test_kern_cuda.o: tests/gpu/test_kern_cuda.c kernels/kernels.h $(EMU_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DTRIAD_HAVE_CUDA=1 -DTRIAD_CUDA_EMU=1 -Itests/cudaemu/include -c $< -o $@
$(KERN_EMU_BIN): $(EMU_DIR)/test_kern_cuda.o $(EMU_DIR)/kern_cuda_emu.o $(EMU_DIR)/cuda_emu_rt.o \
    $(filter $(BUILD)/kernels/cpu/%.o,$(EXEC_OBJ))
	$(CXX) $(LDFLAGS) -o $@ $^ $(BLAS_LIBS) -lm
EMU_BIN += $(KERN_EMU_BIN)

# triad itself built with CUDA=emu, for tests/e2e/test_cudaemu.sh (same
# compiler flags, its own objects under $(BUILD)/cudaemu)
CUDAEMU_TRIAD := $(BUILD)/cudaemu/triad
cudaemu: $(BUILD)/.deps
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/cudaemu CUDA=emu OPT="$(OPT)" EXTRA_CFLAGS="$(EXTRA_CFLAGS)" \
	  EXTRA_LDFLAGS="$(EXTRA_LDFLAGS)" $(CUDAEMU_TRIAD)

unit: all $(UNIT_BIN) $(EMU_BIN)
	@bash tests/run_unit.sh $(UNIT_BIN) $(EMU_BIN)

e2e: all
	@bash tests/run_e2e.sh

test: all $(UNIT_BIN) $(EMU_BIN) cudaemu
	@BUILD=$(BUILD) EXTRA_CFLAGS="$(EXTRA_CFLAGS)" EXTRA_LDFLAGS="$(EXTRA_LDFLAGS)" bash tests/run_all.sh "$(UNIT_BIN) $(EMU_BIN)"

bench: all
	@bash tests/bench.sh

validate: all
	@python3 tests/validate.py --triad $(BUILD)/triad
	@echo
	@python3 tests/validate.py --triad $(BUILD)/triad --heldout --no-plan

RANKS ?= 2
demo: all
	@DEMO_RANKS='$(RANKS)' bash tests/demo.sh

# Leak detection is off: OpenMPI and OpenBLAS keep process-lifetime
# allocations that LeakSanitizer reports; address and UB errors still fail.
asan:
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	$(MAKE) BUILD=build-asan CUDA=0 OPT="-O1" EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" test

check-gpu: all
	@bash tests/check_gpu.sh "$(LOG)"

fuzz:
	@bash tests/fuzz/run.sh $(FUZZ_RUNS)

clean:
	rm -rf $(BUILD) build-asan
