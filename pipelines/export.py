"""Stage: export a run's generator and verifier as Hub-ready folders with model cards; push them.

    python pipelines/export.py run_dir=runs/default                    # -> runs/default/export/{generator,verifier}
    python pipelines/export.py run_dir=runs/x which=generator iteration=2 \
        generator_repo_id=me/mucode-gen push=true dry_run=true         # list files, sizes, repo; send nothing
    HF_TOKEN=hf_... python pipelines/export.py run_dir=runs/x push=true \
        generator_repo_id=me/mucode-gen verifier_repo_id=me/mucode-verifier

Reads the run's model folders (the last complete iteration unless `iteration=`), their resolved
config.yaml and run_dir/summary.json (the report stage); writes out_dir/generator and out_dir/verifier
(safetensors, tokenizer, README.md model card). The Hub token comes from $HF_TOKEN only. CPU is enough;
the model must fit in memory. See mucode/stages/export.py.
"""

from mucode.config import stage_main
from mucode.stages.export import ExportConfig, run


@stage_main("export")
def main(config: ExportConfig) -> None:
    result = run(config)  # logs the file list (dry run) or each push
    for upload in result.uploads:
        where = f"pushed to https://huggingface.co/{upload.repo_id}" if result.pushed else "not pushed"
        print(f"{upload.folder}: {len(upload.files)} files, {where}{' (dry run)' if config.dry_run else ''}")


if __name__ == "__main__":
    main()
